#!/usr/bin/env python3
"""PyTorch baseline for `wick pretrain` throughput (bench/pretrain_compare.sh runs both).

    python3 bench/pretrain_torch.py --config SHAPE.json --ids IDS.json --steps N [--skip K]
        [--batch B] [--seq-len L] [--threads T]

Trains the same Qwen2-architecture model as wick pretrain (RMSNorm, RoPE rotate-half, GQA
attention with q/k/v biases, SwiGLU MLP, tied embeddings; init N(0, initializer_range), norms 1,
biases 0) in float32, eager PyTorch, on windows of --seq-len tokens cut from IDS.json (the
corpus as `wick tokenize --file` writes it), AdamW with wick pretrain's defaults (lr 2e-3,
betas 0.9/0.999, eps 1e-8, weight decay 0.1 on matrices, none on norms and biases, global-norm
clipping 1.0). Prints one JSON line: tokens/s over the steps after the first --skip (warm-up),
the per-step seconds and the losses.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--ids", required=True)
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--skip", type=int, default=5)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
cfg = json.load(open(a.config))
ids = torch.tensor(json.load(open(a.ids)), dtype=torch.long)
V = int(ids.max()) + 1
V = max(V, cfg.get("vocab_size", 0))
d, ff, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
nh = cfg["num_attention_heads"]
nkv = cfg.get("num_key_value_heads", nh)
hd = d // nh
eps = cfg.get("rms_norm_eps", 1e-6)
theta = cfg.get("rope_theta", 10000.0)
std = cfg.get("initializer_range", 0.02)


class RMSNorm(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight


def rotate_half(x):
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q = torch.nn.Linear(d, nh * hd)
        self.k = torch.nn.Linear(d, nkv * hd)
        self.v = torch.nn.Linear(d, nkv * hd)
        self.o = torch.nn.Linear(nh * hd, d, bias=False)
        self.gate = torch.nn.Linear(d, ff, bias=False)
        self.up = torch.nn.Linear(d, ff, bias=False)
        self.down = torch.nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, nh, hd).transpose(1, 2)
        k = self.k(h).view(B, T, nkv, hd).transpose(1, 2)
        v = self.v(h).view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd) + mask
        att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + self.o(att)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, d)
        self.layers = torch.nn.ModuleList([Layer() for _ in range(L)])
        self.norm = RMSNorm(d)
        for m in self.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, 0, std)
                if getattr(m, "bias", None) is not None:
                    torch.nn.init.zeros_(m.bias)

    def forward(self, x):
        T = x.shape[1]
        inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos(), ang.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.norm(h) @ self.embed.weight.T


m = Model()
decay = [p for n, p in m.named_parameters() if p.ndim == 2]
nodecay = [p for n, p in m.named_parameters() if p.ndim != 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": nodecay, "weight_decay": 0.0}], lr=2e-3, eps=1e-8)
nwin = len(ids) // a.seq_len
wins = ids[: nwin * a.seq_len].view(nwin, a.seq_len)
order = torch.randperm(nwin)
times, losses = [], []
for step in range(a.steps):
    sel = order[(step * a.batch) % nwin:(step * a.batch) % nwin + a.batch]
    if len(sel) < a.batch:
        sel = order[: a.batch]
    x = wins[sel]
    t0 = time.perf_counter()
    opt.zero_grad()
    logits = m(x)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    times.append(time.perf_counter() - t0)
    losses.append(loss.item())
steady = times[a.skip:]
print(json.dumps({"impl": "torch " + torch.__version__, "threads": a.threads,
                  "params": sum(p.numel() for p in m.parameters()),
                  "tokens_per_s": a.batch * a.seq_len * len(steady) / sum(steady),
                  "step_s": [round(t, 4) for t in times], "losses": [round(v, 4) for v in losses]}))
