"""PyTorch peer of bench/scale.ts: the same data-parallel training step with the spec-derived
U-Net of fdm_unet.py wrapped in DistributedDataParallel (Gloo on CPU, NCCL on CUDA), started
once per rank with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment (as
torchrun does). Rank 0 writes {"ms": [per-step milliseconds], "torch": version} to --out."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from fdm_unet import UNetVideo

CONFIGS = {
    "balls": dict(image_size=32, mc=64, num_res_blocks=1, T=10, n_obs=5),
    "small": dict(image_size=32, mc=32, num_res_blocks=1, T=4, n_obs=2),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="balls")
    ap.add_argument("--batch", type=int, default=4, help="global batch")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = torch.device(f"cuda:{local_rank}" if a.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    c = CONFIGS[a.config]
    torch.manual_seed(0)
    m = UNetVideo(image_size=c["image_size"], mc=c["mc"], num_res_blocks=c["num_res_blocks"]).to(device)
    model = torch.nn.parallel.DistributedDataParallel(m, device_ids=[local_rank] if device.type == "cuda" else None) if world > 1 else m
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B, T, S = a.batch // world, c["T"], c["image_size"]
    g = torch.Generator().manual_seed(1 + rank)
    x0 = torch.randn(B, T, 3, S, S, generator=g).to(device)
    obs = torch.zeros(B, T, device=device)
    obs[:, : c["n_obs"]] = 1
    lat = 1 - obs
    fi = torch.arange(T, device=device).repeat(B, 1)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        t = torch.randint(0, 1000, (B,), generator=g).to(device)
        a_ = ac[t].float().view(B, 1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=g).to(device)
        xt = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
        out = model(xt, x0, t.float(), fi, obs, lat)
        loss = ((out - noise) ** 2 * lat.view(B, T, 1, 1, 1)).mean()
        loss.backward()  # DDP all-reduces the gradients (bucketed) during backward
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    ms = []
    for _ in range(a.steps):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1000)
    if rank == 0:
        with open(a.out, "w") as f:
            json.dump({"ms": ms, "torch": torch.__version__}, f)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
