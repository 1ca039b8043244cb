"""Export stages: small nn.Modules wrapping XPortrait with flat, stable graph I/O.

Packed tensors (documented in docs/MODELS.md and in the manifest's `layouts`):
  ref_kv   [B, Lr]       for each main-UNet transformer block i (input, middle, output order):
                         K_i [Nr_i, C_i] then V_i [Nr_i, C_i], row-major, concatenated.
  ctrl_res [B, Lc]       for each skip residual j (12 input-block zero convs ... then middle):
                         R_j [C_j, H_j, W_j], concatenated (pose + local ControlNet, summed).
  cache    [B, W, F]     W = sink + ring slots; per slot the frame payload F is, for each motion
                         module m and each temporal attention a in it: K [HW_m, C_m] then V.
  cache_mask [B, W]      1.0 = slot holds a frame, 0.0 = empty (warm-up).
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from .nn import NEG_INF, XPortrait, attention, window_slots


# ----------------------------------------------------------------------------- schedule

TIMESTEP_RULES = ("skip-step", "linspace")
MAX_WINDOW = 16   # temporal positions (cached frames + the current one) the motion modules were trained on


def lcm_timesteps(n: int, rule: str = "skip-step", num_train_timesteps=1000, original_steps=50) -> List[int]:
    """LCM inference timesteps, highest first, picked from the original schedule
    origin = [N/M·(i+1) − 1 for i < M] reversed. "skip-step" (the LCM paper's and early diffusers'
    rule): every ⌊M/n⌋-th entry. "linspace" (diffusers' current rule): entry ⌊i·M/n⌋."""
    c = num_train_timesteps // original_steps
    origin = [(i + 1) * c - 1 for i in range(original_steps)][::-1]
    if rule == "skip-step":
        return origin[::original_steps // n][:n]
    if rule == "linspace":
        return [origin[(i * original_steps) // n] for i in range(n)]
    raise ValueError(f"unknown LCM timestep rule {rule!r} (one of {', '.join(TIMESTEP_RULES)})")


def lcm_schedule(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 original_steps=50, timestep_scaling=10.0, sigma_data=0.5, rule="skip-step"):
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    ac = torch.cumprod(1.0 - betas, dim=0)
    steps = {}
    for n in (1, 2, 4, 8):
        ts = lcm_timesteps(n, rule, num_train_timesteps, original_steps)
        rows = []
        for t in ts:
            st = t * timestep_scaling
            rows.append({
                "t": int(t),
                "alpha_cumprod": float(ac[t]),
                "sqrt_alpha_cumprod": float(ac[t].sqrt()),
                "sqrt_one_minus_alpha_cumprod": float((1 - ac[t]).sqrt()),
                "c_skip": sigma_data ** 2 / (st ** 2 + sigma_data ** 2),
                "c_out": st / math.sqrt(st ** 2 + sigma_data ** 2),
            })
        steps[str(n)] = rows
    return {
        "type": "lcm",
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": "scaled_linear",
        "beta_start": beta_start,
        "beta_end": beta_end,
        "prediction_type": "epsilon",
        "original_inference_steps": original_steps,
        "timestep_scaling": timestep_scaling,
        "sigma_data": sigma_data,
        "timestep_rule": rule,
        "timesteps": {k: [r["t"] for r in v] for k, v in steps.items()},
        "steps": steps,
    }, ac.to(torch.float32)


# ----------------------------------------------------------------------------- layouts

def _layout(entries: List[Tuple[str, Tuple[int, ...]]]):
    out, off = [], 0
    for name, shape in entries:
        n = 1
        for s in shape:
            n *= s
        out.append({"name": name, "shape": list(shape), "offset": off, "size": n})
        off += n
    return out, off


def geometry(model: XPortrait):
    """Per-block shapes (per batch item) of the packed tensors, derived by a dry run."""
    cfg = model.cfg
    L = cfg.latent_size
    unet = model.unet
    x = torch.zeros(1, cfg.unet.in_channels, L, L)
    t = torch.zeros(1, dtype=torch.long)
    ctx = torch.zeros(1, cfg.context_tokens, cfg.unet.context_dim)
    with torch.no_grad():
        bank = model.appearance_control_model.forward_bank(x, t, ctx)
        hint = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
        ctrl = model.pose_control_model.forward_control(x, hint, t, ctx)
        shapes = {}

        def probe(j, mm, h):
            shapes[j] = (h.shape[2] * h.shape[3], h.shape[1], mm.n_attn)
            return h
        unet.forward_main(x, t, ctx, [(torch.zeros(1, 0, b.shape[2]), torch.zeros(1, 0, b.shape[2])) for b in bank], ctrl, probe)
    ref = []
    for i, b in enumerate(bank):
        ref += [(f"block{i}.k", (b.shape[1], b.shape[2])), (f"block{i}.v", (b.shape[1], b.shape[2]))]
    ctl = [(f"res{j}", tuple(r.shape[1:])) for j, r in enumerate(ctrl)]
    cache = []
    for j in sorted(shapes):
        n, c, na = shapes[j]
        for a in range(na):
            cache += [(f"mm{j}.attn{a}.k", (n, c)), (f"mm{j}.attn{a}.v", (n, c))]
    ref_l, ref_n = _layout(ref)
    ctl_l, ctl_n = _layout(ctl)
    cache_l, cache_n = _layout(cache)
    return {"ref_kv": (ref_l, ref_n), "ctrl_res": (ctl_l, ctl_n), "cache_frame": (cache_l, cache_n),
            "motion_modules": [{"index": j, "tokens": shapes[j][0], "channels": shapes[j][1],
                                "attention_blocks": shapes[j][2]} for j in sorted(shapes)]}


def unpack(flat: torch.Tensor, layout) -> List[torch.Tensor]:
    """flat [..., L] -> list of [..., *shape]."""
    lead = flat.shape[:-1]
    return [flat[..., e["offset"]: e["offset"] + e["size"]].reshape(*lead, *e["shape"]) for e in layout]


def pack(ts: List[torch.Tensor], nlead: int = 1) -> torch.Tensor:
    return torch.cat([t.reshape(*t.shape[:nlead], -1) for t in ts], dim=-1)


# ----------------------------------------------------------------------------- stages

class _Base(nn.Module):
    def __init__(self, model: XPortrait, context: torch.Tensor):
        super().__init__()
        self.m = model
        self.register_buffer("context", context.reshape(1, *context.shape[-2:]).float())


class ReferenceStage(_Base):
    """ref_latent [B,4,h,w] (UNet space), timestep [B] int64 -> ref_kv [B, Lr]."""

    def forward(self, ref_latent, timestep):
        bank = self.m.appearance_control_model.forward_bank(ref_latent, timestep, self.context)
        blocks = self.m.unet.transformer_blocks()
        out = []
        for n, blk in zip(bank, blocks):
            out += [blk.attn1.to_k(n), blk.attn1.to_v(n)]
        return pack(out)


class ControlStage(_Base):
    """latent, timestep, driving [B,3,H,W], local [B,3,H,W] (both in [-1,1]) -> ctrl_res [B, Lc]."""

    def forward(self, latent, timestep, driving, local):
        a = self.m.pose_control_model.forward_control(latent, driving, timestep, self.context)
        b = self.m.local_pose_control_model.forward_control(latent, local, timestep, self.context)
        return pack([x + y for x, y in zip(a, b)])


class DenoiseStage(_Base):
    """One LCM step of the main UNet for one frame per batch item, with the temporal cache."""

    def __init__(self, model, context, geom, sink: int, ring: int, alphas_cumprod: torch.Tensor,
                 timestep_scaling=10.0, sigma_data=0.5):
        super().__init__(model, context)
        self.geom = geom
        self.sink, self.ring = sink, ring
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.ts_scale, self.sigma_data = timestep_scaling, sigma_data

    def forward(self, latent, timestep, ref_kv, ctrl_res, cache_in, cache_mask, uncond=None):
        """uncond [B]: 1.0 for a classifier-free-guidance unconditional item (no reference
        attention; the caller gives it zero ctrl_res and its own cache), 0.0 otherwise."""
        S, W = self.sink, self.sink + self.ring
        B = latent.shape[0]
        refs = unpack(ref_kv, self.geom["ref_kv"][0])
        ref_pairs = [(refs[2 * i], refs[2 * i + 1]) + ((uncond,) if uncond is not None else ())
                     for i in range(len(refs) // 2)]
        ctrl = unpack(ctrl_res, self.geom["ctrl_res"][0])
        segs = unpack(cache_in, self.geom["cache_frame"][0])        # each [B, W, HW, C]
        bias = (torch.cat([cache_mask, torch.ones_like(cache_mask[:, :1])], 1) - 1.0) * (-NEG_INF)
        new: List[torch.Tensor] = []
        pos = [0]

        def temporal(j, mm, h):
            na = mm.n_attn
            caches = [(segs[pos[0] + 2 * a], segs[pos[0] + 2 * a + 1]) for a in range(na)]
            pos[0] += 2 * na
            out, kv = mm.forward_stream(h, caches, bias)
            for k, v in kv:
                new.extend([k, v])
            return out

        eps = self.m.unet.forward_main(latent, timestep, self.context, ref_pairs, ctrl, temporal)
        frame = pack(new)[:, None]                                   # [B, 1, F]
        full = (cache_mask[:, :1] > 0.5).reshape(B, 1, 1)
        ring_shift = torch.cat([cache_in[:, :S], cache_in[:, S + 1:], frame], 1)
        all_shift = torch.cat([cache_in[:, 1:], frame], 1)
        cache_out = torch.where(full, ring_shift, all_shift)
        mask_out = torch.cat([cache_mask[:, 1:], torch.ones_like(cache_mask[:, :1])], 1)
        # LCM boundary-condition parameterisation
        a = self.alphas_cumprod[timestep].reshape(B, 1, 1, 1)
        x0 = (latent - torch.sqrt(1.0 - a) * eps) / torch.sqrt(a)
        st = timestep.to(torch.float32).reshape(B, 1, 1, 1) * self.ts_scale
        c_skip = self.sigma_data ** 2 / (st * st + self.sigma_data ** 2)
        c_out = st / torch.sqrt(st * st + self.sigma_data ** 2)
        denoised = c_skip * latent + c_out * x0
        return eps, denoised, cache_out, mask_out


def window_temporal(mm, x, positions, collect=None):
    """AnimateDiff's own temporal attention over a clip — every frame attends to every frame, the
    position code added before the projections — for a stream's bidirectional warm-up window.
    x [K, C, H, W]; positions [K]. `collect` receives each attention's position-free K, V
    ([K, HW, C]) for the cache."""
    y = mm._pre(x)
    for blk in mm.temporal_transformer.transformer_blocks:
        for attn, norm in zip(blk.attention_blocks, blk.norms):
            hn = norm(y)
            if collect is not None:
                collect.extend([attn.to_k(hn), attn.to_v(hn)])
            ctx = (hn + attn.pos_encoder.pe[0, positions][:, None, :]).permute(1, 0, 2)     # [HW, K, C]
            o = attention(attn.to_q(ctx), attn.to_k(ctx), attn.to_v(ctx), attn.heads)
            y = attn.to_out(o.permute(1, 0, 2)) + y
        y = blk.ff(blk.ff_norm(y)) + y
    return mm._post(y, x)


class DenoiseWindowStage(DenoiseStage):
    """The bidirectional warm-up window at one LCM step: a stream's first K frames together (batch =
    the K frames of ONE stream, K fixed at export), frame f at position W − (K − 1 − f), every frame
    attending to every frame. Returns eps and denoised per frame, and the cache and mask as streaming
    those K frames would have left them (frames at the positions the next frame sees them at)."""

    def __init__(self, model, context, geom, sink, ring, alphas_cumprod, frames: int, **kw):
        super().__init__(model, context, geom, sink, ring, alphas_cumprod, **kw)
        W = sink + ring
        if not 2 <= frames <= W + 1:
            raise ValueError(f"a warm-up window holds 2..{W + 1} frames (sink + ring + 1), got {frames}")
        self.frames = frames
        self.register_buffer("positions", torch.arange(W - frames + 1, W + 1), persistent=False)

    def forward(self, latent, timestep, ref_kv, ctrl_res):
        W = self.sink + self.ring
        refs = unpack(ref_kv, self.geom["ref_kv"][0])
        ref_pairs = [(refs[2 * i], refs[2 * i + 1]) for i in range(len(refs) // 2)]
        ctrl = unpack(ctrl_res, self.geom["ctrl_res"][0])
        new: List[torch.Tensor] = []
        eps = self.m.unet.forward_main(latent, timestep, self.context, ref_pairs, ctrl,
                                       lambda j, mm, h: window_temporal(mm, h, self.positions, new))
        payload = pack(new)                                           # [K, F]
        at = dict((s, f) for f, s in window_slots(self.frames, self.sink, self.ring))
        zero = torch.zeros_like(payload[:1])
        cache_out = torch.cat([payload[at[s]:at[s] + 1] if s in at else zero for s in range(W)])[None]
        mask_out = torch.tensor([[1.0 if s in at else 0.0 for s in range(W)]])
        a = self.alphas_cumprod[timestep].reshape(-1, 1, 1, 1)
        x0 = (latent - torch.sqrt(1.0 - a) * eps) / torch.sqrt(a)
        st = timestep.to(torch.float32).reshape(-1, 1, 1, 1) * self.ts_scale
        denoised = self.sigma_data ** 2 / (st * st + self.sigma_data ** 2) * latent + st / torch.sqrt(st * st + self.sigma_data ** 2) * x0
        return eps, denoised, cache_out, mask_out


class VaeEncodeStage(nn.Module):
    """image [B,3,H,W] in [-1,1] -> latent [B,4,h,w] (posterior mean * scale_factor)."""

    def __init__(self, model: XPortrait):
        super().__init__()
        self.m = model
        self.scale = model.cfg.vae.scale_factor

    def forward(self, image):
        return self.m.first_stage_model.encode_mean(image) * self.scale


class VaeDecodeStage(nn.Module):
    """latent [B,4,h,w] (UNet space) -> image [B,3,H,W], nominally [-1,1] (not clamped)."""

    def __init__(self, model: XPortrait):
        super().__init__()
        self.m = model
        self.scale = model.cfg.vae.scale_factor

    def forward(self, latent):
        return self.m.first_stage_model.decode(latent / self.scale)


class TaesdDecodeStage(nn.Module):
    """latent [B,4,h,w] (UNet space) -> image [B,3,H,W] in [-1,1]."""

    def __init__(self, taesd):
        super().__init__()
        self.t = taesd

    def forward(self, latent):
        return self.t(latent) * 2.0 - 1.0


def reference_video_eps(model: XPortrait, context, latents, timesteps, ref_kv, ctrl_res, geom, sink, ring):
    """Full causal recompute (no cache) of the main UNet over T frames of one stream: frame t
    attends to window_slots(t) frames, positions applied before projection (original form)."""
    refs = unpack(ref_kv, geom["ref_kv"][0])
    ref_pairs = [(refs[2 * i], refs[2 * i + 1]) for i in range(len(refs) // 2)]
    ctrl = unpack(ctrl_res, geom["ctrl_res"][0])
    ctx = context.reshape(1, *context.shape[-2:])
    return model.unet.forward_main(latents, timesteps, ctx, ref_pairs, ctrl,
                                   lambda j, mm, h: mm.forward_video(h, sink, ring))
