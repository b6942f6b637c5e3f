#!/usr/bin/env python3
"""Loads what wick's trainer saved into transformers / peft and compares the logits with wick's
(run on the GPU machine, which has them, on its CPU in float32).

    WICK_INTEROP_OUT=DIR build/tests/test_train     # here: writes DIR/<family>_<full|lora>/
    python3 tests/golden/check_trained.py ARCH_DIR DIR [OUT.json]

Each DIR/<family>_<mode>/ holds what wick_trainer_save wrote after 3 AdamW steps (a Hugging
Face model folder for full training, a PEFT adapter folder for LoRA), wick_logits.f32 (float32
[2, 12, V], wick's logits of the trained model) and wick_logits.json (the base family, the
mode, the shape and the ids). A full folder is loaded with AutoModelForCausalLM; an adapter is
put on ARCH_DIR/<family> with PeftModel.from_pretrained. Prints and writes (OUT.json) the max
|transformers - wick| per case; exits 1 when any exceeds 1e-4 or fails to load.
"""
import json
import os
import sys
import traceback

import numpy as np
import torch

torch.set_num_threads(1)
from transformers import AutoModelForCausalLM  # noqa: E402

ARCH, DIR = sys.argv[1], sys.argv[2]
OUT = sys.argv[3] if len(sys.argv) > 3 else None
res, bad = {}, False
for case in sorted(os.listdir(DIR)):
    d = os.path.join(DIR, case)
    meta_p = os.path.join(d, "wick_logits.json")
    if not os.path.isfile(meta_p):
        continue
    meta = json.load(open(meta_p))
    try:
        base = os.path.join(ARCH, meta["base"])
        if meta["mode"] == "full":
            m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        else:
            from peft import PeftModel
            m = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
            m = PeftModel.from_pretrained(m, d)
        m.eval()
        ids = torch.tensor(meta["ids"], dtype=torch.long).reshape(meta["shape"][0], meta["shape"][1])
        with torch.no_grad():
            lg = m(input_ids=ids).logits.float().numpy()
        wk = np.fromfile(os.path.join(d, "wick_logits.f32"), dtype=np.float32).reshape(lg.shape)
        err = float(np.abs(lg - wk).max())
        res[case] = {"max_abs_diff": err, "ok": err <= 1e-4}
        bad |= err > 1e-4
    except Exception as e:  # noqa: BLE001
        res[case] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        bad = True
    print(case, json.dumps({k: v for k, v in res[case].items() if k != "trace"}), flush=True)
if OUT:
    json.dump(res, open(OUT, "w"), indent=1)
sys.exit(1 if bad else 0)
