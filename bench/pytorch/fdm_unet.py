"""An FDM video U-Net in plain PyTorch, written from REFERENCE_SPEC §4 for two purposes:

* a peer for the model benchmark (bench/model.ts runs it in the same process run), and
* an independent check of flexvid's TypeScript model (test/fixtures/model/make_parity.py).

It is deliberately straightforward (einsum attention, no layout tricks) so that it reads next to
the spec. Parameter names follow the reference state dict (§12).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNEL_MULT = {32: (1, 2, 2, 2), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 160: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4)}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (as the reference's GroupNorm32), so it runs under autocast."""

    def forward(self, x):
        return super().forward(x.float())


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, dropout=0.0):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(32, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_layers = nn.Sequential(GroupNorm32(32, cout), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, dim=1)
        norm, rest = self.out_layers[0], self.out_layers[1:]
        h = rest(norm(h) * (1 + scale) + shift)
        return self.skip_connection(x) + h


class RPENet(nn.Module):
    def __init__(self, channels, emb_dim):
        super().__init__()
        self.embed_distances = nn.Linear(3, channels)
        self.embed_diffusion_time = nn.Linear(emb_dim, channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, phi, emb):
        # phi [B, T, T, 3]; emb [B, E] -> [B, T, T, C]
        z = self.embed_distances(phi) + self.embed_diffusion_time(emb)[:, None, None, :]
        return self.out(F.silu(z))


class RPE(nn.Module):
    def __init__(self, channels, emb_dim):
        super().__init__()
        self.rpe_net = RPENet(channels, emb_dim)


class Attention(nn.Module):
    def __init__(self, channels, heads, emb_dim, rpe):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm32(32, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = nn.Linear(channels, channels)
        if rpe:
            self.rpe_q = RPE(channels, emb_dim)
            self.rpe_k = RPE(channels, emb_dim)
            self.rpe_v = RPE(channels, emb_dim)
        self.rpe = rpe

    def forward(self, x, mask=None, phi=None, emb=None):
        # x: [B, D, C, L]; attends along L for each of the D rows
        B, D, C, L = x.shape
        nh, d = self.heads, C // self.heads
        xn = self.norm(x.reshape(B * D, C, L)).reshape(B, D, C, L)
        qkv = self.qkv(xn.transpose(2, 3))  # [B, D, L, 3C]
        q, k, v = qkv.reshape(B, D, L, 3, nh, d).unbind(3)  # [B, D, L, nh, d]
        q = q * d ** -0.5
        logits = torch.einsum("bdihe,bdjhe->bdhij", q, k)
        if self.rpe:
            rq = self.rpe_q.rpe_net(phi, emb).reshape(B, L, L, nh, d)
            rk = self.rpe_k.rpe_net(phi, emb).reshape(B, L, L, nh, d)
            rv = self.rpe_v.rpe_net(phi, emb).reshape(B, L, L, nh, d)
            logits = logits + torch.einsum("bdihe,bijhe->bdhij", q, rk)
            logits = logits + torch.einsum("bdjhe,bjihe->bdhij", k * d ** -0.5, rq)
        if mask is not None:
            allowed = mask[:, :, None] == mask[:, None, :]  # [B, L, L]
            logits = logits.masked_fill(~allowed[:, None, None], float("-inf"))
        a = logits.float().softmax(-1).to(logits.dtype)
        o = torch.einsum("bdhij,bdjhe->bdihe", a, v)
        if self.rpe:
            o = o + torch.einsum("bdhij,bijhe->bdihe", a, rv)
        o = o.reshape(B, D, L, C)
        y = xn.transpose(2, 3) + self.proj_out(o)  # residual on the normalised input (§4.3 step 7)
        return y.transpose(2, 3)


class AttentionReferenceLayout(Attention):
    """The same attention computed in the operation order of the reference implementation
    (REFERENCE_SPEC §4.3 as the original code lays it out): q, k, v as permuted views
    [B, D, heads, L, d], logits by `q @ kᵀ`, the RPE terms as separate einsums against
    R [B, L(i), L(j), heads, d] (one R per frame's time embedding), the mask as a subtracted
    +inf tensor, output heads merged by a permute. Used by the benchmark (--peer reference)
    to time the reference's formulation; numerically equal to Attention."""

    def forward(self, x, mask=None, phi=None, emb=None):
        B, D, C, L = x.shape
        nh, d = self.heads, C // self.heads
        scale = d ** -0.5
        xn = self.norm(x.reshape(B * D, C, L)).view(B, D, C, L)
        xt = xn.permute(0, 1, 3, 2)  # [B, D, L, C], a view
        qkv = self.qkv(xt).reshape(B, D, L, 3, nh, d).permute(3, 0, 1, 4, 2, 5)  # [3, B, D, H, L, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * scale
        attn = q @ k.transpose(-2, -1)  # [B, D, H, L, L]
        if self.rpe:
            emb_f = emb[:, None].expand(B, L, emb.shape[-1])  # per-frame time embedding [B, L, E]

            def rel(net):
                z = net.embed_distances(phi) + net.embed_diffusion_time(emb_f).view(B, L, 1, C)
                return net.out(F.silu(z)).view(B, L, L, nh, d)

            attn = attn + torch.einsum("bdhtf,btshf->bdhts", q, rel(self.rpe_k.rpe_net))
            attn = attn + torch.einsum("bdhtf,btshf->bdhts", k * scale, rel(self.rpe_q.rpe_net)).transpose(-1, -2)
        if mask is not None:
            m_i, m_j = mask.view(B, L, 1), mask.view(B, 1, L)
            blocked = 1 - (m_i * m_j + (1 - m_i) * (1 - m_j))
            blocked[blocked == 1] = float("inf")
            attn = attn - blocked.view(B, 1, 1, L, L)
        attn = torch.softmax(attn.float(), dim=-1).type(attn.dtype)
        out = attn @ v
        if self.rpe:
            out = out + torch.einsum("bdhts,btshf->bdhtf", attn, rel(self.rpe_v.rpe_net))
        out = out.permute(0, 1, 3, 2, 4).reshape(B, D, L, C)
        return (xt + self.proj_out(out)).permute(0, 1, 3, 2)


class FactorizedAttention(nn.Module):
    def __init__(self, channels, heads, emb_dim, layout="spec"):
        super().__init__()
        cls = AttentionReferenceLayout if layout == "reference" else Attention
        self.spatial_attention = cls(channels, heads, emb_dim, rpe=False)
        self.temporal_attention = cls(channels, heads, emb_dim, rpe=True)

    def forward(self, h, B, T, mask, phi, emb):
        BT, C, H, W = h.shape
        x = h.reshape(B, T, C, H * W).permute(0, 3, 2, 1)  # [B, HW, C, T]
        x = self.temporal_attention(x, mask=mask, phi=phi, emb=emb)
        x = x.permute(0, 3, 2, 1)  # [B, T, C, HW]
        x = self.spatial_attention(x)
        return x.reshape(BT, C, H, W)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Block(nn.ModuleList):
    def forward(self, h, emb, B, T, mask, phi, emb_video):
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, FactorizedAttention):
                h = layer(h, B, T, mask, phi, emb_video)
            else:
                h = layer(h)
        return h


class UNetVideo(nn.Module):
    def __init__(self, image_size=32, in_channels=3, mc=128, num_res_blocks=2, attention_resolutions="16,8", heads=4, dropout=0.0, layout="spec"):
        super().__init__()
        self.mc = mc
        E = 4 * mc
        rates = {image_size // int(r) for r in attention_resolutions.split(",")}
        mult = CHANNEL_MULT[image_size]
        self.time_embed = nn.Sequential(nn.Linear(mc, E), nn.SiLU(), nn.Linear(E, E))
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(in_channels + 1, mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, m * mc, E, dropout)]
                ch = m * mc
                if ds in rates:
                    layers.append(FactorizedAttention(ch, heads, E, layout))
                self.input_blocks.append(Block(layers))
                chans.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(Block([Downsample(ch)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Block([ResBlock(ch, ch, E, dropout), FactorizedAttention(ch, heads, E, layout), ResBlock(ch, ch, E, dropout)])
        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), m * mc, E, dropout)]
                ch = m * mc
                if ds in rates:
                    layers.append(FactorizedAttention(ch, heads, E, layout))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Block(layers))
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), nn.Conv2d(mc, in_channels, 3, padding=1))

    def forward(self, x, x0, timesteps, frame_indices, obs_mask, latent_mask):
        B, T, C, H, W = x.shape
        obs = obs_mask.reshape(B, T, 1, 1, 1).to(x.dtype)
        lat = latent_mask.reshape(B, T, 1, 1, 1).to(x.dtype)
        inp = torch.cat([x * (1 - obs) + x0 * obs, obs.expand(B, T, 1, H, W)], dim=2).reshape(B * T, C + 1, H, W)
        emb_video = self.time_embed(timestep_embedding(timesteps, self.mc))
        emb = emb_video[:, None].expand(B, T, -1).reshape(B * T, -1)
        mask = (obs + lat).clamp(max=1).reshape(B, T)
        f = frame_indices.float()
        delta = f[:, :, None] - f[:, None, :]
        phi = torch.stack([torch.log1p(delta.clamp(min=0)), torch.log1p((-delta).clamp(min=0)), (delta == 0).float()], dim=-1)
        h, hs = inp, []
        for block in self.input_blocks:
            h = block(h, emb, B, T, mask, phi, emb_video)
            hs.append(h)
        h = self.middle_block(h, emb, B, T, mask, phi, emb_video)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, B, T, mask, phi, emb_video)
        return self.out(h).reshape(B, T, -1, H, W)


def deterministic_fill_(model):
    """Fill every parameter with a smooth deterministic pattern (also reproduced in TypeScript):
    value_i = a * sin(0.1 * i + h), i the flat index, h = (sum of the name's char codes) mod 97,
    a = 0.1 for norm weights/biases offset (norm weights are 1 + a·sin), 0.05 otherwise."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            h = sum(ord(c) for c in name) % 97
            i = torch.arange(p.numel(), dtype=torch.float64)
            v = torch.sin(0.1 * i + h)
            if ".norm." in name or "in_layers.0" in name or "out_layers.0" in name or name.startswith("out.0"):
                v = (1.0 + 0.1 * v) if name.endswith("weight") else 0.1 * v
            else:
                v = 0.05 * v
            p.copy_(v.reshape(p.shape).to(p.dtype))


if __name__ == "__main__":
    # Self-check: the two attention layouts compute the same function (tiny config, masks and
    # irregular frame indices so every RPE and mask term matters).
    torch.manual_seed(0)
    spec, ref = UNetVideo(32, 3, 32, 1), UNetVideo(32, 3, 32, 1, layout="reference")
    deterministic_fill_(spec)
    deterministic_fill_(ref)
    x, x0 = torch.randn(2, 6, 3, 32, 32), torch.randn(2, 6, 3, 32, 32)
    obs = torch.tensor([[1.0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0]])
    lat = torch.tensor([[0.0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0]])
    fi = torch.tensor([[0, 3, 5, 6, 9, 12], [0, 1, 2, 4, 8, 16]])
    t = torch.tensor([10.0, 700.0])
    diff = (spec(x, x0, t, fi, obs, lat) - ref(x, x0, t, fi, obs, lat)).abs().max().item()
    print(f"spec vs reference attention layout: max |difference| {diff:.2e}")
    assert diff < 1e-4, diff
