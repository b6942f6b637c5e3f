#!/usr/bin/env python3
"""PyTorch's side of bench/embed_compare/run.sh: the encoder folder of make_model.py as
torch.nn.TransformerEncoder (post-norm layers with erf GELU: exactly BERT's layer), BERT's
embeddings + LayerNorm in front, mean pooling over the valid tokens + L2 normalisation
behind; weights read from the same model.safetensors. Runs under torch.inference_mode with
the encoder's fast path (nested tensors for the padding) on.

    python3 torch_embed.py DIR THREADS BATCH REPEATS OUT.f32 [--export OUT.onnx]

Prints "sentences/s X" (BATCH > 1: best pass of REPEATS over all texts in batches of BATCH,
padded to the longest text of each batch) or "latency_ms X" (BATCH 1: median over texts of
the best of REPEATS), and writes the embeddings (texts x dim, f32) to OUT.f32. --export also
writes the same module (without the nested-tensor path, which the exporter cannot trace) as
ONNX for ort_embed.mjs."""
import json
import struct
import sys
import time

import torch
from torch import nn


def load_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=torch.float32).reshape(v["shape"])
    return out


class Encoder(nn.Module):
    def __init__(self, cfg, w, nested=True):
        super().__init__()
        d, L, H, ff = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]
        eps = cfg["layer_norm_eps"]
        self.word = nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
        self.pos = nn.Embedding.from_pretrained(w["embeddings.position_embeddings.weight"])
        self.type0 = nn.Parameter(w["embeddings.token_type_embeddings.weight"][0].clone(), requires_grad=False)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.ln.weight.data, self.ln.bias.data = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        layer = nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, activation="gelu", layer_norm_eps=eps,
                                           batch_first=True, norm_first=False)
        self.enc = nn.TransformerEncoder(layer, L, enable_nested_tensor=nested)
        for i, lay in enumerate(self.enc.layers):
            p = f"encoder.layer.{i}."
            g = lambda n: w[p + n]  # noqa: E731
            lay.self_attn.in_proj_weight.data = torch.cat([g("attention.self.query.weight"),
                                                          g("attention.self.key.weight"),
                                                          g("attention.self.value.weight")])
            lay.self_attn.in_proj_bias.data = torch.cat([g("attention.self.query.bias"),
                                                        g("attention.self.key.bias"),
                                                        g("attention.self.value.bias")])
            lay.self_attn.out_proj.weight.data = g("attention.output.dense.weight")
            lay.self_attn.out_proj.bias.data = g("attention.output.dense.bias")
            lay.linear1.weight.data, lay.linear1.bias.data = g("intermediate.dense.weight"), g("intermediate.dense.bias")
            lay.linear2.weight.data, lay.linear2.bias.data = g("output.dense.weight"), g("output.dense.bias")
            lay.norm1.weight.data, lay.norm1.bias.data = g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")
            lay.norm2.weight.data, lay.norm2.bias.data = g("output.LayerNorm.weight"), g("output.LayerNorm.bias")
        self.eval()

    def forward(self, ids, mask):
        T = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:T] + self.type0
        x = self.ln(x)
        y = self.enc(x, src_key_padding_mask=mask == 0)
        m = mask.unsqueeze(-1).to(y.dtype)
        e = (y * m).sum(1) / m.sum(1)
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def batches(texts, B):
    for b0 in range(0, len(texts), B):
        chunk = texts[b0:b0 + B]
        T = max(map(len, chunk))
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.long)
        for i, t in enumerate(chunk):
            ids[i, :len(t)] = torch.tensor(t)
            mask[i, :len(t)] = 1
        yield b0, ids, mask


def main():
    d, threads, B, reps, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(threads)
    cfg = json.load(open(d + "/config.json"))
    w = load_st(d + "/model.safetensors")
    texts = json.load(open(d + "/ids.json"))["texts"]
    model = Encoder(cfg, w)
    emb = torch.zeros(len(texts), cfg["hidden_size"])
    pre = list(batches(texts, B))
    best, lat = 1e30, [1e30] * len(texts)
    with torch.inference_mode():
        for _ in range(reps):
            t0 = time.perf_counter()
            for b0, ids, mask in pre:
                c0 = time.perf_counter()
                emb[b0:b0 + ids.shape[0]] = model(ids, mask)
                lat[b0] = min(lat[b0], time.perf_counter() - c0)
            best = min(best, time.perf_counter() - t0)
    if B == 1:
        print("latency_ms %.3f" % (1e3 * sorted(lat)[len(lat) // 2]))
    else:
        print("sentences/s %.1f" % (len(texts) / best))
    open(out, "wb").write(emb.contiguous().numpy().tobytes())
    if "--export" in sys.argv:
        path = sys.argv[sys.argv.index("--export") + 1]
        plain = Encoder(cfg, w, nested=False)
        _, ids, mask = pre[0]
        torch.onnx.export(plain, (ids, mask), path, input_names=["ids", "mask"], output_names=["emb"],
                          dynamic_axes={"ids": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"}, "emb": {0: "b"}},
                          opset_version=17)


main()
