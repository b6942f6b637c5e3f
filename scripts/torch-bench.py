#!/usr/bin/env python3
"""torch-bench.py — prefill and decode tokens/s of the Hugging Face transformers implementation
of a model folder on the GPU, measured the way `wick bench generate` measures wick, so the two
figures can stand side by side:
  ppN: an empty cache, one forward pass over N prompt ids, logits of the last position copied
       to the host (float32);
  tgN: an empty cache, N forward passes of one id each (the ids are fixed, not sampled), each
       step's logits copied to the host.
The ids are wick's (the same 64-bit LCG, seed 12345, modulo the vocabulary). WARMUP untimed runs
(default 3: the first runs pick cuBLAS algorithms and load kernels), then REPS timed runs; the host clock is read after the copy to the host, which waits for
the GPU. Prints one table row per test with the median and the mean ± sd.

Not here: sampling, batching, compilation (torch.compile / CUDA graphs): this is eager PyTorch,
what `model.generate` runs by default.

usage: scripts/torch-bench.py MODEL_DIR [-p 512] [-n 128] [-r 5] [-w 3] [--dtype bf16|f16|f32]
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def wick_ids(n, n_vocab):
    x, ids = 12345, []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        ids.append((x >> 33) % n_vocab)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("-w", type=int, default=3, help="untimed warm-up runs of each test")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    a = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dt).cuda().eval()
    n_vocab = model.config.vocab_size
    ids = torch.tensor([wick_ids(max(a.p, a.n), n_vocab)], device="cuda")

    def pp():
        with torch.inference_mode():
            out = model(ids[:, : a.p], use_cache=True, logits_to_keep=1)
            out.logits[0, -1].float().cpu()

    def tg():
        with torch.inference_mode():
            cache = None
            for k in range(a.n):
                out = model(ids[:, k : k + 1], past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                out.logits[0, -1].float().cpu()

    print(f"model: {a.model} (transformers, {a.dtype}, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__})")
    print("| test   | tokens/s median | mean ± sd       |   ms/token |")
    print("|--------|-----------------|-----------------|------------|")
    for name, fn, n in (("pp", pp, a.p), ("tg", tg, a.n)):
        if n <= 0:
            continue
        t = []
        for r in range(a.w + a.r):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            t.append(n / (time.perf_counter() - t0))
        t = t[a.w:]
        med = statistics.median(t)
        sd = statistics.stdev(t) if len(t) > 1 else 0.0
        print(f"| {name}{n:<4d} | {med:15.1f} | {statistics.mean(t):8.1f} ± {sd:<5.1f} | "
              f"{1e3 / med:10.2f} |")


if __name__ == "__main__":
    main()
