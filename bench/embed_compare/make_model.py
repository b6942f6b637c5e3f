#!/usr/bin/env python3
"""Makes a seeded random BERT encoder folder of a real shape and a seeded mix of token-id
texts, for bench/embed_compare/run.sh (wick against PyTorch and ONNX Runtime on one file).

    python3 make_model.py OUT_DIR minilm|mpnet [--texts N] [--seed S]

OUT_DIR gets config.json and model.safetensors (BertModel names, F32; weights 0.02*randn,
LayerNorm weights 1 + 0.1*randn, biases 0.02*randn) and ids.json: N texts (default 256) of
8-128 ids each ([CLS]=101 ... [SEP]=102 around ids drawn from [1000, vocab)), lengths drawn
uniformly. Shapes: minilm = all-MiniLM-L6-v2 (384 wide, 6 layers, 12 heads, 1536, vocab
30522); mpnet = all-mpnet-base-v2's sizes (768, 12 layers, 12 heads, 3072, vocab 30527) run as
a BERT layer (MPNet's relative position bias is not in nn.TransformerEncoder; wick's MPNet
exactness is tests/test_encoder_arch's). Needs only numpy-free torch (Debian python3-torch)."""
import json
import os
import struct
import sys

import torch

SHAPES = {"minilm": dict(d=384, layers=6, heads=12, ff=1536, vocab=30522),
          "mpnet": dict(d=768, layers=12, heads=12, ff=3072, vocab=30527)}


def save_safetensors(path, tensors):
    """safetensors by hand (the Debian image has no safetensors package): header + F32 data."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].contiguous().float()
        b = t.numpy().tobytes() if hasattr(t, "numpy") else bytes(t.untyped_storage())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    out, shape = sys.argv[1], sys.argv[2]
    n_texts = int(sys.argv[sys.argv.index("--texts") + 1]) if "--texts" in sys.argv else 256
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    s = SHAPES[shape]
    d, L, ff, V, P = s["d"], s["layers"], s["ff"], s["vocab"], 512
    g = torch.Generator().manual_seed(seed)
    rn = lambda *sh: torch.randn(*sh, generator=g)  # noqa: E731
    t = {"embeddings.word_embeddings.weight": 0.02 * rn(V, d),
         "embeddings.position_embeddings.weight": 0.02 * rn(P, d),
         "embeddings.token_type_embeddings.weight": 0.02 * rn(2, d),
         "embeddings.LayerNorm.weight": 1 + 0.1 * rn(d), "embeddings.LayerNorm.bias": 0.02 * rn(d)}
    for i in range(L):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            t[p + n + ".weight"], t[p + n + ".bias"] = 0.02 * rn(d, d), 0.02 * rn(d)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = 0.02 * rn(ff, d), 0.02 * rn(ff)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = 0.02 * rn(d, ff), 0.02 * rn(d)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + n + ".weight"], t[p + n + ".bias"] = 1 + 0.1 * rn(d), 0.02 * rn(d)
    os.makedirs(out, exist_ok=True)
    save_safetensors(os.path.join(out, "model.safetensors"), t)
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": d,
           "num_hidden_layers": L, "num_attention_heads": s["heads"], "intermediate_size": ff,
           "hidden_act": "gelu", "vocab_size": V, "max_position_embeddings": P,
           "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    texts = []
    for _ in range(n_texts):
        n = 8 + int(torch.randint(0, 121, (1,), generator=g))
        body = torch.randint(1000, V, (n - 2,), generator=g).tolist()
        texts.append([101] + body + [102])
    json.dump({"shape": shape, "seed": seed, "texts": texts}, open(os.path.join(out, "ids.json"), "w"))
    print(f"wrote {out}: {shape}, {sum(x.numel() for x in t.values()) / 1e6:.1f} M parameters, "
          f"{n_texts} texts of {min(map(len, texts))}-{max(map(len, texts))} ids")


main()
