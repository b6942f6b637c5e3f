"""The GPU's device-to-device copy rate (torch, 1 GiB, median of 20 after 3 warm-ups): the
bandwidth limit the CUDA decode figures are measured against. Run with the image's own
libraries (unset LD_LIBRARY_PATH when wick's deps are on it)."""
import torch

n = 1 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda")
b = torch.empty_like(a)
for _ in range(3):
    b.copy_(a)
torch.cuda.synchronize()
ts = []
for _ in range(20):
    e0 = torch.cuda.Event(enable_timing=True)
    e1 = torch.cuda.Event(enable_timing=True)
    e0.record()
    b.copy_(a)
    e1.record()
    torch.cuda.synchronize()
    ts.append(e0.elapsed_time(e1) / 1e3)
ts.sort()
t = ts[len(ts) // 2]
print(f"device-to-device copy of 1 GiB: median {t*1e3:.3f} ms; read {n/t/1e9:.0f} GB/s "
      f"(read+write {2*n/t/1e9:.0f} GB/s)")
