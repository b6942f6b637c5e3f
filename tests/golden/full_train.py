#!/usr/bin/env python3
"""Golden for full-parameter training (issue 18): gradients of every weight of tiny-qwen2 on
the PEFT training batch, and AdamW steps with two parameter groups, made with transformers.

    python3 tests/golden/full_train.py FIXTURES_DIR OUT.safetensors

FIXTURES_DIR holds tiny-qwen2/ (config.json, model.safetensors) and tiny-qwen2-lora/
golden.safetensors (key train_input_ids, I64 [2, 33]). Writes, with the model's parameter
names (model.named_parameters(): the tied lm_head is model.embed_tokens.weight):
  loss0                       F32 [1]   loss at the initial weights
  {name}.grad                 F32       gradient at the initial weights
  const.losses                F32 [5]   loss before each of 5 steps, AdamW lr 1e-3, wd 0.01 on
                                        matrices (2-D tensors), 0 on norms and biases,
                                        betas (0.9, 0.999), eps 1e-8, no clipping
  const.{name}                F32       parameters after those 5 steps
  clip.losses, clip.{name}    same with clip_grad_norm_(max_norm=0.5) before every step and a
                              warmup (2 steps) + cosine (total 5) schedule, as transformers'
                              get_cosine_schedule_with_warmup
Loss: HF causal-LM loss over all 2·32 predicted tokens (labels = input ids), float32, eager
attention, CPU (so the golden does not depend on GPU kernels).
"""
import math
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

torch.use_deterministic_algorithms(True)
fx, out = sys.argv[1], sys.argv[2]
ids = load_file(f"{fx}/tiny-qwen2-lora/golden.safetensors")["train_input_ids"].long()


def load():
    m = AutoModelForCausalLM.from_pretrained(f"{fx}/tiny-qwen2", dtype=torch.float32,
                                             attn_implementation="eager")
    m.train()
    return m


def groups(m):
    named = sorted(m.named_parameters(), key=lambda kv: kv[0])
    decay = [p for n, p in named if p.ndim == 2]
    no_decay = [p for n, p in named if p.ndim != 2]
    return [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]


res = {}
m = load()
loss = m(input_ids=ids, labels=ids).loss
loss.backward()
res["loss0"] = torch.tensor([loss.item()], dtype=torch.float32)
for n, p in m.named_parameters():
    res[n + ".grad"] = p.grad.detach().clone().contiguous()
print("loss0", loss.item(), "params", sum(p.numel() for p in m.parameters()))

for tag in ("const", "clip"):
    m = load()
    opt = torch.optim.AdamW(groups(m), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    sched = get_cosine_schedule_with_warmup(opt, 2, 5) if tag == "clip" else None
    losses = []
    for step in range(5):
        opt.zero_grad()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        if tag == "clip":
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
        opt.step()
        if sched:
            sched.step()
        losses.append(loss.item())
    res[tag + ".losses"] = torch.tensor(losses, dtype=torch.float32)
    for n, p in m.named_parameters():
        res[f"{tag}.{n}"] = p.detach().clone().contiguous()
    print(tag, losses)

save_file(res, out, metadata={"torch": torch.__version__,
                              "transformers": __import__("transformers").__version__})
