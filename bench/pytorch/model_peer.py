"""PyTorch peer of bench/model.ts: the same training step and sampling stage with the
spec-derived U-Net of fdm_unet.py (--layout spec: einsum attention; --layout reference: the
reference implementation's operation order; both compute the same function).
--serve: the JSON-lines protocol of peer_serve.py."""
import argparse
import math

import torch

from fdm_unet import UNetVideo
from peer_serve import serve

CONFIGS = {
    "balls": dict(image_size=32, mc=64, num_res_blocks=1, B=2, T=10, n_obs=5),
    "maze": dict(image_size=64, mc=128, num_res_blocks=1, B=1, T=20, n_obs=10),
}


def alphas_cumprod(n=1000):
    betas = torch.linspace(1e-4, 0.02, n, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def setup(case, sample_calls, amp="off", layout="spec", videos=1):
    name, kind = case.split("-")
    c = CONFIGS[name]
    torch.manual_seed(0)
    m = UNetVideo(image_size=c["image_size"], mc=c["mc"], num_res_blocks=c["num_res_blocks"], layout=layout)
    B, T, S = (c["B"] if kind == "train" else videos), c["T"], c["image_size"]
    x0 = torch.randn(B, T, 3, S, S)
    obs = torch.zeros(B, T)
    obs[:, : c["n_obs"]] = 1
    lat = 1 - obs
    fi = torch.arange(T).repeat(B, 1)
    ac = alphas_cumprod()
    if kind == "train":
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            t = torch.randint(0, 1000, (B,))
            a = ac[t].float().view(B, 1, 1, 1, 1)
            noise = torch.randn_like(x0)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                out = m(xt, x0, t.float(), fi, obs, lat).float()
            loss = ((out - noise) ** 2 * lat.view(B, T, 1, 1, 1)).mean()
            loss.backward()
            opt.step()

        return step
    m.eval()

    def stage():
        # Euler steps with churn as the reference's Heun sampler (one model call per step).
        with torch.no_grad():
            x = torch.randn_like(x0, dtype=torch.float64) * 80.0
            for k in range(sample_calls):
                sigma = 80.0 * (1 - k / sample_calls) + 1e-3
                t = torch.full((B,), 999.0 * (1 - k / sample_calls))
                xv = (x / math.sqrt(1 + sigma * sigma)).float()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                    out = m(xv, x0, t, fi, obs, lat).float()
                den = xv - out  # stand-in for the x0 prediction arithmetic
                x = x + (den.double() - x) * 0.02

    return stage


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-calls", type=int, default=47)  # default Heun string: 46 steps + the warm-up call
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--amp", choices=["off", "bf16"], default="off")
    ap.add_argument("--layout", choices=["spec", "reference"], default="spec")
    ap.add_argument("--videos", type=int, default=1)  # videos per sampling stage
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    serve(a.threads, lambda case: setup(case, a.sample_calls, a.amp, a.layout, a.videos))
