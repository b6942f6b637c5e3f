# cmp.py MODEL WICK_LOGITS IDS : transformers f32 logits vs wick's (same ids), max abs diff + argmax agreement
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).cuda().eval()
ids = [int(t) for t in sys.argv[3].split(",")]
torch.backends.cuda.matmul.allow_tf32 = False
with torch.inference_mode():
    ref = m(torch.tensor([ids], device="cuda")).logits[0].double().cpu()
w = load_file(sys.argv[2])["logits"].double()
d = (w - ref).abs()
print(f"wick cuda vs transformers f32 on the random model: {len(ids)} positions, max abs diff {d.max().item():.3g}, "
      f"max |logit| {ref.abs().max().item():.3g}, argmax agree {(w.argmax(-1) == ref.argmax(-1)).sum().item()}/{len(ids)}")
