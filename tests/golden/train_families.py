#!/usr/bin/env python3
"""Training goldens for the decoder families of issue 16 (Gemma 2 / 3, Phi-3, the MoE
families), made with transformers + peft on the CPU in float32 (run on the GPU machine, which
has them; see bench/cuda-lease/NOTES.md).

    python3 tests/golden/train_families.py ARCH_DIR OUT_DIR [family ...]

ARCH_DIR is tests/data/arch (the tiny random models of arch_goldens.py, each a folder with
config.json + model.safetensors, some with a PEFT adapter in lora/). Writes
OUT_DIR/<family>/train_golden.safetensors and, for families whose adapter this script makes,
OUT_DIR/<family>/train_lora/ (a PEFT folder). Keys:

  ids                 I64 [2, T]  random ids (torch.Generator seeded per family); labels = ids,
                                  transformers' causal-LM loss over all 2·(T-1) targets
  full.loss0          F32 [1]     loss at the model's weights (every family; MoE: routers and
                                  experts too, the top-k choice itself without gradient)
  full.{name}.grad    F32         gradient of every parameter (model.named_parameters() names;
                                  Gemma's norms are its stored w, the forward uses 1 + w)
  full.losses         F32 [3]     loss before each of 3 AdamW steps: lr 1e-3, betas (0.9,
                                  0.999), eps 1e-8, weight decay 0.01 on 2-D tensors, 0 on
                                  the rest, no clipping, constant schedule
  full.{name}         F32         parameters after the 3 steps
  lora.logits         F32 [2, T, V] the logits with the adapter, before any step
  lora.loss0, lora.{key}.grad, lora.losses, lora.{key}
                                  the same for the LoRA parameters only (base frozen), with the
                                  adapter of lora/ (or train_lora/, made here: r 4, alpha 8,
                                  q/k/v/o and, for dense families, gate/up/down; B random so
                                  every A has a gradient); keys as PEFT saves them
                                  (…lora_A.weight), weight decay 0.01 on all
Eager attention; the model in eval mode (no dropout exists in these configs anyway).
"""
import hashlib
import json
import os
import sys

import torch

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
torch.set_float32_matmul_precision("highest")

import safetensors.torch as st  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

ARCH, OUT = sys.argv[1], sys.argv[2]
ONLY = set(sys.argv[3:])
# family: (sequence length, full training?, adapter: "lora" (in ARCH) or "make")
FAMILIES = {
    "gemma2": (12, True, "lora"),
    "gemma3": (12, True, "make"),
    "llama32": (12, True, "make"),
    "phi3": (40, True, "lora"),   # 40 > original_max_position_embeddings 32: long factors
    "mixtral": (12, True, "lora"),
    "qwen3_moe": (12, True, "make"),
    "olmoe": (12, True, "make"),
}
SEEDS = {f: 9100 + i for i, f in enumerate(FAMILIES)}


def load(d):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def run(m, params, ids, decay_if, res, prefix):
    """Loss and gradients at the start, then 3 AdamW steps; params: [(key, tensor)]."""
    for _, p in params:
        p.grad = None
    loss = m(input_ids=ids, labels=ids).loss
    loss.backward()
    res[prefix + "loss0"] = torch.tensor([loss.item()], dtype=torch.float32)
    for k, p in params:
        res[f"{prefix}{k}.grad"] = p.grad.detach().clone().contiguous()
    dec = [p for k, p in params if decay_if(k, p)]
    nod = [p for k, p in params if not decay_if(k, p)]
    groups = [{"params": dec, "weight_decay": 0.01}]
    if nod:
        groups.append({"params": nod, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    res[prefix + "losses"] = torch.tensor(losses, dtype=torch.float32)
    for k, p in params:
        res[prefix + k] = p.detach().clone().contiguous()
    return losses


def family(name):
    T, full, adapter = FAMILIES[name]
    d = os.path.join(ARCH, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    g = torch.Generator().manual_seed(SEEDS[name])
    ids = torch.randint(0, cfg["vocab_size"], (2, T), generator=g)
    res = {"ids": ids}
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    info = {}
    if full:
        m = load(d)
        params = sorted(m.named_parameters(), key=lambda kv: kv[0])
        info["full"] = run(m, params, ids, lambda k, p: p.ndim == 2, res, "full.")
    if adapter:
        from peft import LoraConfig, PeftModel, get_peft_model
        m = load(d)
        if adapter == "lora":
            pm = PeftModel.from_pretrained(m, os.path.join(d, "lora"), is_trainable=True)
        else:
            moe = "num_experts_per_tok" in cfg
            targets = ["q_proj", "k_proj", "v_proj", "o_proj"] + \
                ([] if moe else ["gate_proj", "up_proj", "down_proj"])
            lc = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0,
                            init_lora_weights=False)
            torch.manual_seed(SEEDS[name] + 1)
            pm = get_peft_model(m, lc)
            pm.save_pretrained(os.path.join(out, "train_lora"))
        pm.eval()
        with torch.no_grad():
            res["lora.logits"] = pm(input_ids=ids).logits.float().contiguous()
        params = sorted(((k.replace(".default", ""), p) for k, p in pm.named_parameters()
                         if p.requires_grad), key=lambda kv: kv[0])
        assert params, "no trainable LoRA parameters"
        info["lora"] = run(pm, params, ids, lambda k, p: True, res, "lora.")
    st.save_file(res, os.path.join(out, "train_golden.safetensors"),
                 metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    return info


status = {"versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "peft")},
          "script_sha256": hashlib.sha256(open(__file__, "rb").read()).hexdigest(),
          "families": {}}
failed = False
for f in FAMILIES:
    if ONLY and f not in ONLY:
        continue
    try:  # one family's failure must not cost the others their goldens
        status["families"][f] = family(f)
    except Exception as e:  # noqa: BLE001
        import traceback
        status["families"][f] = {"error": f"{type(e).__name__}: {e}",
                                 "trace": traceback.format_exc()[-2000:]}
        failed = True
    print(f, status["families"][f], flush=True)
json.dump(status, open(os.path.join(OUT, "train_status.json"), "w"), indent=1)
sys.exit(1 if failed else 0)
