#!/usr/bin/env python3
"""PyTorch peer of bench/engine.ts: the same training steps, timed the same way.

Each step = zero grads (set to None), forward, backward, AdamW step.

Two modes:
- standalone: `engine_peer.py --threads 1 --reps 10 --warmup 3 [--cases conv,…]` prints one JSON line
  {"torch": version, "threads": n, "results": [{"case": name, "ms": median ms/step}]};
- `--serve` (used by bench/engine.ts so that flexvid and PyTorch steps alternate in time and see the
  same machine load): reads one JSON command per line on stdin and answers one JSON line each:
  {"cmd": "setup", "case": name} → {"ok": true}; {"cmd": "step"} → {"ms": wall ms of one step};
  {"cmd": "quit"}. The first line printed is {"torch": version, "threads": n}.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

from peer_serve import serve


def param(shape, g, scale):
    return (torch.randn(shape, generator=g) * scale).requires_grad_()


def conv_case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 64, 32, 32, generator=g)
    ps = [param((64, 64, 3, 3), g, 0.04), param((64,), g, 0.01), param((64, 64, 3, 3), g, 0.04), param((64,), g, 0.01)]
    w1, b1, w2, b2 = ps
    opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0)

    def step():
        opt.zero_grad(set_to_none=True)
        h = F.silu(F.conv2d(x, w1, b1, padding=1))
        y = F.conv2d(h, w2, b2, padding=1)
        y.square().mean().backward()
        opt.step()

    return step


def attention(x, wqkv, bqkv, wo, bo, heads):
    B, L, C = x.shape
    qkv = F.linear(x, wqkv, bqkv).reshape(B, L, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if hasattr(F, "scaled_dot_product_attention"):  # PyTorch ≥ 2.0: fused kernel, as the engine uses there
        o = F.scaled_dot_product_attention(q, k, v)
    else:  # the plain form the engine uses on libtorch 1.13
        o = (q @ k.transpose(-2, -1) * (1 / math.sqrt(C // heads))).softmax(-1) @ v
    return F.linear(o.transpose(1, 2).reshape(B, L, C), wo, bo)


def attention_case(B, L, C=128, heads=4):
    def make():
        g = torch.Generator().manual_seed(1)
        x = torch.randn(B, L, C, generator=g)
        ps = [param((3 * C, C), g, 1 / math.sqrt(C)), param((3 * C,), g, 0.01), param((C, C), g, 1 / math.sqrt(C)), param((C,), g, 0.01)]
        opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0)

        def step():
            opt.zero_grad(set_to_none=True)
            attention(x, *ps, heads).square().mean().backward()
            opt.step()

        return step

    return make


CASES = {"conv": conv_case, "attn-temporal": attention_case(2560, 10), "attn-spatial": attention_case(20, 256)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.serve:
        serve(a.threads, lambda case: CASES[case]())
        return
    results = []
    for name in a.cases.split(","):
        step = CASES[name]()
        for _ in range(a.warmup):
            step()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1000)
        results.append({"case": name, "ms": statistics.median(times)})
        del step
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "results": results}))


if __name__ == "__main__":
    main()
