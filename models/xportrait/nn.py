"""X-Portrait network, written for this project (PyTorch, export-friendly).

Module names follow the ldm/CompVis naming used by the published X-Portrait checkpoint so that its
state dict loads key for key:

  model.diffusion_model.*            SD1.5 UNet + AnimateDiff motion modules
                                     (input_blocks_motion_module.N.0.temporal_transformer...,
                                      output_blocks_motion_module.N.0.temporal_transformer...)
  appearance_control_model.*         ReferenceNet (UNet copy without `out`, with an unused hint block)
  pose_control_model.*               ControlNet on the aligned driving frame
  local_pose_control_model.*         ControlNet on eye/mouth patches
  first_stage_model.*                KL VAE (encoder/decoder/quant_conv/post_quant_conv)

Streaming changes against the offline model:
  * reference attention split: the ReferenceNet's normed hidden states (the "bank") are projected
    with the *main* UNet's attn1.to_k/to_v once per portrait; the denoise stage takes those K/V.
  * causal temporal attention with an explicit rolling cache (sink + ring slots); see
    TemporalAttention.forward_stream and docs/MODELS.md ("Temporal cache").
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelCfg, UNetCfg, MotionCfg, VAECfg, TAESDCfg

NEG_INF = -1.0e4  # additive attention bias for empty cache slots (representable in fp16)


# ----------------------------------------------------------------------------- helpers

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding, [cos | sin] order as in ldm."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


_SDPA = False


def use_fused_attention(on: bool) -> bool:
    """Route attention through torch >= 2's scaled_dot_product_attention (flash / memory-efficient
    kernels) instead of the plain matmul form. The torch engine turns it on; the ONNX exporter keeps
    the plain form. Returns whether it is on (False where torch has no SDPA, e.g. 1.13)."""
    global _SDPA
    _SDPA = bool(on) and hasattr(F, "scaled_dot_product_attention")
    return _SDPA


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
              bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q [B, Nq, C], k/v [B, Nk, C] -> [B, Nq, C]."""
    b, nq, c = q.shape
    nk = k.shape[1]
    dh = c // heads
    if _SDPA and bias is None:
        o = F.scaled_dot_product_attention(q.reshape(b, nq, heads, dh).transpose(1, 2),
                                           k.reshape(k.shape[0], nk, heads, dh).transpose(1, 2).expand(b, -1, -1, -1),
                                           v.reshape(v.shape[0], nk, heads, dh).transpose(1, 2).expand(b, -1, -1, -1))
        return o.transpose(1, 2).reshape(b, nq, c)
    q = q.reshape(b, nq, heads, dh).permute(0, 2, 1, 3)
    k = k.reshape(b, nk, heads, dh).permute(0, 2, 3, 1)
    v = v.reshape(b, nk, heads, dh).permute(0, 2, 1, 3)
    s = torch.matmul(q, k) * (dh ** -0.5)
    if bias is not None:
        s = s + bias
    p = torch.softmax(s, dim=-1)
    o = torch.matmul(p, v)
    return o.permute(0, 2, 1, 3).reshape(b, nq, c)


def conv(cin, cout, k=3, stride=1, padding=None, bias=True):
    if padding is None:
        padding = k // 2
    return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)


# ----------------------------------------------------------------------------- UNet parts

class ResBlock(nn.Module):
    def __init__(self, ch: int, emb_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), conv(ch, out_ch))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out_ch), nn.SiLU(), nn.Dropout(0.0),
                                        conv(out_ch, out_ch))
        self.skip_connection = nn.Identity() if ch == out_ch else conv(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = conv(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = conv(ch, ch, 3)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: Optional[int] = None):
        super().__init__()
        inner = heads * dim_head
        cdim = context_dim if context_dim is not None else dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(cdim, inner, bias=False)
        self.to_v = nn.Linear(cdim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        ctx = x if context is None else context
        k = self.to_k(ctx)
        v = self.to_v(ctx)
        if k.shape[0] != x.shape[0]:
            k = k.expand(x.shape[0], -1, -1)
            v = v.expand(x.shape[0], -1, -1)
        return self.to_out(attention(self.to_q(x), k, v, self.heads))

    def forward_ref(self, x, k_ref, v_ref, uncond=None):
        """Reference-only self attention: keys/values = own tokens ++ reference tokens. `uncond`
        [B] (> 0.5: a CFG unconditional item, which upstream runs without reference attention):
        that item's reference is its own tokens again — duplicated keys keep every softmax ratio,
        so it is exactly plain self-attention, and both branches share one batch."""
        k_own, v_own = self.to_k(x), self.to_v(x)
        if uncond is not None:
            u = uncond.reshape(-1, 1, 1) > 0.5
            k_ref, v_ref = torch.where(u, k_own, k_ref), torch.where(u, v_own, v_ref)
        k = torch.cat([k_own, k_ref], dim=1)
        v = torch.cat([v_own, v_ref], dim=1)
        return self.to_out(attention(self.to_q(x), k, v, self.heads))


class GEGLU(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, dout * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, heads, dim_head, context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context, ref: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                bank: Optional[list] = None):
        n = self.norm1(x)
        if bank is not None:
            bank.append(n)
        if ref is not None:
            x = self.attn1.forward_ref(n, *ref) + x
        else:
            x = self.attn1(n) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return x


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, depth, context_dim, groups):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, ch, 1)

    def forward(self, x, context, refs=None, bank=None):
        """refs: iterator yielding (k, v) per transformer block, or None."""
        b, c, h, w = x.shape
        x_in = x
        x = self.proj_in(self.norm(x))
        x = x.reshape(b, x.shape[1], h * w).permute(0, 2, 1)
        for blk in self.transformer_blocks:
            x = blk(x, context, ref=next(refs) if refs is not None else None, bank=bank)
        x = x.permute(0, 2, 1).reshape(b, -1, h, w)
        return self.proj_out(x) + x_in


# ----------------------------------------------------------------------------- motion module

class PositionalEncoding(nn.Module):
    def __init__(self, dim, max_len):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(pos * div)
        pe[0, :, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)  # persistent: AnimateDiff checkpoints carry it


def window_slots(t: int, sink: int, ring: int) -> List[Tuple[int, int]]:
    """(past frame index, slot) pairs visible to frame t. Slots 0..W-1 (W = sink + ring); the
    current frame always sits at slot W. Warm-up (t <= W): the t past frames fill the rightmost
    slots. Afterwards: frames 0..sink-1 in slots 0..sink-1, the last `ring` frames in age order."""
    W = sink + ring
    if t <= W:
        return [(f, W - t + f) for f in range(t)]
    return [(f, f) for f in range(sink)] + [(t - ring + i, sink + i) for i in range(ring)]


class TemporalAttention(nn.Module):
    """AnimateDiff 'VersatileAttention' (Temporal_Self) with a causal, cached streaming form.

    The sinusoidal position code is added to the hidden states *before* the bias-free to_k/to_v,
    so K(x + pe[s]) = K_raw(x) + to_k(pe[s]). The cache stores K_raw/V_raw (position free) and the
    slot position is added when attending. Slot positions are fixed (see window_slots), so frames
    keep a valid encoding for a stream that never ends.
    """

    def __init__(self, dim, heads, pe_max_len):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))
        self.pos_encoder = PositionalEncoding(dim, pe_max_len)

    def forward_stream(self, h, k_cache, v_cache, bias):
        """h [B, HW, C] (current frame, normed); k/v_cache [B, W, HW, C] raw; bias [B, W+1].
        Returns out [B, HW, C], k_new [B, HW, C], v_new [B, HW, C] (raw)."""
        b, n, c = h.shape
        W = k_cache.shape[1]
        pe = self.pos_encoder.pe[0, : W + 1]                       # [W+1, C]
        k_new = self.to_k(h)
        v_new = self.to_v(h)
        q = self.to_q(h + pe[W])                                   # [B, HW, C]
        k = torch.cat([k_cache, k_new[:, None]], dim=1) + self.to_k(pe)[None, :, None, :]
        v = torch.cat([v_cache, v_new[:, None]], dim=1) + self.to_v(pe)[None, :, None, :]
        heads, dh = self.heads, c // self.heads
        qh = q.reshape(b, n, heads, 1, dh)
        kh = k.reshape(b, W + 1, n, heads, dh).permute(0, 2, 3, 4, 1)   # [B, HW, h, dh, W+1]
        vh = v.reshape(b, W + 1, n, heads, dh).permute(0, 2, 3, 1, 4)   # [B, HW, h, W+1, dh]
        s = torch.matmul(qh, kh) * (dh ** -0.5) + bias[:, None, None, None, :]
        o = torch.matmul(torch.softmax(s, dim=-1), vh)                  # [B, HW, h, 1, dh]
        return self.to_out(o.reshape(b, n, c)), k_new, v_new

    def forward_window(self, h_all, t, sink, ring):
        """Reference (non-cached) causal attention for frame t of one stream, computed the
        original AnimateDiff way (position added before projection). h_all [T, HW, C]."""
        W = sink + ring
        pe = self.pos_encoder.pe[0]
        idx = window_slots(t, sink, ring)
        xs = [h_all[f] + pe[s] for f, s in idx] + [h_all[t] + pe[W]]
        ctx = torch.stack(xs, dim=1)                                     # [HW, L, C]
        q = self.to_q(h_all[t] + pe[W])[:, None]                         # [HW, 1, C]
        o = attention(q, self.to_k(ctx), self.to_v(ctx), self.heads)     # [HW, 1, C]
        return self.to_out(o[:, 0])


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim, heads, n_attn, pe_max_len):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, pe_max_len) for _ in range(n_attn)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(n_attn)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, ch, mcfg: MotionCfg):
        super().__init__()
        self.norm = nn.GroupNorm(mcfg.norm_groups, ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(ch, mcfg.num_heads, len(mcfg.attention_block_types), mcfg.pe_max_len)
             for _ in range(mcfg.num_transformer_block)])
        self.proj_out = nn.Linear(ch, ch)


class VanillaTemporalModule(nn.Module):
    def __init__(self, ch, mcfg: MotionCfg):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(ch, mcfg)

    @property
    def n_attn(self) -> int:
        tt = self.temporal_transformer
        return sum(len(b.attention_blocks) for b in tt.transformer_blocks)

    def _pre(self, x):
        tt = self.temporal_transformer
        b, c, h, w = x.shape
        y = tt.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        return tt.proj_in(y)

    def _post(self, y, x):
        b, c, h, w = x.shape
        y = self.temporal_transformer.proj_out(y)
        return y.reshape(b, h, w, c).permute(0, 3, 1, 2) + x

    def forward_stream(self, x, caches, bias):
        """x [B, C, H, W]; caches: list (per attention block) of (k [B,W,HW,C], v [B,W,HW,C]).
        Returns (out, list of (k_new, v_new))."""
        y = self._pre(x)
        new = []
        i = 0
        for blk in self.temporal_transformer.transformer_blocks:
            for attn, norm in zip(blk.attention_blocks, blk.norms):
                o, kn, vn = attn.forward_stream(norm(y), caches[i][0], caches[i][1], bias)
                y = o + y
                new.append((kn, vn))
                i += 1
            y = blk.ff(blk.ff_norm(y)) + y
        return self._post(y, x), new

    def forward_video(self, x, sink, ring):
        """Reference full causal recompute over all frames of one stream. x [T, C, H, W]."""
        y = self._pre(x)                                               # [T, HW, C]
        T = x.shape[0]
        for blk in self.temporal_transformer.transformer_blocks:
            for attn, norm in zip(blk.attention_blocks, blk.norms):
                hn = norm(y)
                y = torch.stack([attn.forward_window(hn, t, sink, ring) for t in range(T)], 0) + y
            y = blk.ff(blk.ff_norm(y)) + y
        return self._post(y, x)


# ----------------------------------------------------------------------------- UNet family

def _level_dims(u: UNetCfg):
    return [u.model_channels * m for m in u.channel_mult]


class UNetTrunk(nn.Module):
    """input_blocks / middle_block (+ output_blocks, out, motion modules, hint block, zero convs)
    according to flags; the naming matches ldm's UNetModel / ControlNet / X-Portrait classes."""

    def __init__(self, cfg: ModelCfg, *, output_blocks: bool, out: bool, motion: bool,
                 hint: bool, zero_convs: bool):
        super().__init__()
        u = cfg.unet
        self.cfg = cfg
        self.mc = u.model_channels
        emb = u.model_channels * 4
        g = u.norm_groups
        self.time_embed = nn.Sequential(nn.Linear(u.model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))

        def st(ch):
            dh = ch // u.num_heads
            return SpatialTransformer(ch, u.num_heads, dh, u.transformer_depth, u.context_dim, g)

        if hint:
            w = list(u.hint_widths)
            layers = [conv(u.hint_channels, w[0]), nn.SiLU()]
            strides = [1, 1, 2, 1, 2, 1, 2]
            for i in range(1, len(w)):
                layers += [conv(w[i - 1], w[i], 3, stride=strides[i], padding=1), nn.SiLU()]
            layers += [conv(w[-1], u.model_channels)]
            self.input_hint_block = nn.Sequential(*layers)

        self.input_blocks = nn.ModuleList([nn.Sequential(conv(u.in_channels, u.model_channels))])
        if motion:
            self.input_blocks_motion_module = nn.ModuleList()
        if zero_convs:
            self.zero_convs = nn.ModuleList([nn.Sequential(conv(u.model_channels, u.model_channels, 1, padding=0))])
        self.in_mm_index = {}   # input block index -> motion module index
        chans = [u.model_channels]
        ch = u.model_channels
        ds = 1
        for level, mult in enumerate(u.channel_mult):
            for _ in range(u.num_res_blocks):
                layers = [ResBlock(ch, emb, mult * u.model_channels, g)]
                ch = mult * u.model_channels
                if ds in u.attention_resolutions:
                    layers.append(st(ch))
                if motion:
                    self.in_mm_index[len(self.input_blocks)] = len(self.input_blocks_motion_module)
                    self.input_blocks_motion_module.append(nn.Sequential(VanillaTemporalModule(ch, cfg.motion)))
                self.input_blocks.append(nn.Sequential(*layers))
                if zero_convs:
                    self.zero_convs.append(nn.Sequential(conv(ch, ch, 1, padding=0)))
                chans.append(ch)
            if level != len(u.channel_mult) - 1:
                self.input_blocks.append(nn.Sequential(Downsample(ch)))
                if zero_convs:
                    self.zero_convs.append(nn.Sequential(conv(ch, ch, 1, padding=0)))
                chans.append(ch)
                ds *= 2
        self.middle_block = nn.Sequential(ResBlock(ch, emb, ch, g), st(ch), ResBlock(ch, emb, ch, g))
        if zero_convs:
            self.middle_block_out = nn.Sequential(conv(ch, ch, 1, padding=0))
        self.has_output = output_blocks
        if output_blocks:
            self.output_blocks = nn.ModuleList()
            if motion:
                self.output_blocks_motion_module = nn.ModuleList()
            for level, mult in list(enumerate(u.channel_mult))[::-1]:
                for i in range(u.num_res_blocks + 1):
                    ich = chans.pop()
                    layers = [ResBlock(ch + ich, emb, u.model_channels * mult, g)]
                    ch = u.model_channels * mult
                    if ds in u.attention_resolutions:
                        layers.append(st(ch))
                    if motion:
                        self.output_blocks_motion_module.append(nn.Sequential(VanillaTemporalModule(ch, cfg.motion)))
                    if level and i == u.num_res_blocks:
                        layers.append(Upsample(ch))
                        ds //= 2
                    self.output_blocks.append(nn.Sequential(*layers))
        if out:
            self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), conv(u.model_channels, u.out_channels))
        self.has_motion = motion

    # -- shared block runner
    @staticmethod
    def run_block(block, h, emb, context, refs=None, bank=None):
        for layer in block:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, refs=refs, bank=bank)
            else:
                h = layer(h)
        return h

    def motion_modules(self) -> List[VanillaTemporalModule]:
        if not self.has_motion:
            return []
        return [m[0] for m in self.input_blocks_motion_module] + [m[0] for m in self.output_blocks_motion_module]

    def transformer_blocks(self) -> List[BasicTransformerBlock]:
        out = []
        blocks = list(self.input_blocks) + [self.middle_block] + (list(self.output_blocks) if self.has_output else [])
        for b in blocks:
            for layer in b:
                if isinstance(layer, SpatialTransformer):
                    out.extend(layer.transformer_blocks)
        return out

    def embed(self, t):
        return self.time_embed(timestep_embedding(t, self.mc).to(next(self.time_embed.parameters()).dtype))

    # -- ReferenceNet ("write"): returns the bank (norm1 output of every transformer block)
    def forward_bank(self, x, t, context):
        emb = self.embed(t)
        bank: list = []
        hs = []
        h = x
        for blk in self.input_blocks:
            h = self.run_block(blk, h, emb, context, bank=bank)
            hs.append(h)
        h = self.run_block(self.middle_block, h, emb, context, bank=bank)
        for blk in self.output_blocks:
            h = self.run_block(blk, torch.cat([h, hs.pop()], 1), emb, context, bank=bank)
        return bank

    # -- ControlNet: residuals (zero conv outputs + middle_block_out)
    def forward_control(self, x, hint, t, context):
        emb = self.embed(t)
        g = self.input_hint_block(hint)
        outs = []
        h = x
        for i, (blk, zc) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = self.run_block(blk, h, emb, context)
            if i == 0:
                h = h + g
            outs.append(zc(h))
        h = self.run_block(self.middle_block, h, emb, context)
        outs.append(self.middle_block_out(h))
        return outs

    # -- main UNet
    def forward_main(self, x, t, context, ref_kv, ctrl, temporal):
        """temporal(mm_index, module, h) -> h applies the motion module (stream or video form)."""
        emb = self.embed(t)
        refs = iter(ref_kv) if ref_kv is not None else None
        ctrl = list(ctrl) if ctrl is not None else None
        hs = []
        h = x
        for i, blk in enumerate(self.input_blocks):
            h = self.run_block(blk, h, emb, context, refs=refs)
            if self.has_motion and i in self.in_mm_index:
                j = self.in_mm_index[i]
                h = temporal(j, self.input_blocks_motion_module[j][0], h)
            hs.append(h)
        h = self.run_block(self.middle_block, h, emb, context, refs=refs)
        if ctrl is not None:
            h = h + ctrl.pop()
        n_in = len(self.input_blocks_motion_module) if self.has_motion else 0
        for i, blk in enumerate(self.output_blocks):
            skip = hs.pop()
            if ctrl is not None:
                skip = skip + ctrl.pop()
            h = self.run_block(blk, torch.cat([h, skip], 1), emb, context, refs=refs)
            if self.has_motion:
                h = temporal(n_in + i, self.output_blocks_motion_module[i][0], h)
        return self.out(h)


# ----------------------------------------------------------------------------- VAE (ldm naming)

class VResnetBlock(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = conv(cin, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = conv(cout, cout)
        if cin != cout:
            self.nin_shortcut = conv(cin, cout, 1, padding=0)
        self.cin, self.cout = cin, cout

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.cin != self.cout:
            x = self.nin_shortcut(x)
        return x + h


class VAttnBlock(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.q = conv(ch, ch, 1, padding=0)
        self.k = conv(ch, ch, 1, padding=0)
        self.v = conv(ch, ch, 1, padding=0)
        self.proj_out = conv(ch, ch, 1, padding=0)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).permute(0, 2, 1)
        k = self.k(n).reshape(b, c, h * w).permute(0, 2, 1)
        v = self.v(n).reshape(b, c, h * w).permute(0, 2, 1)
        o = attention(q, k, v, 1).permute(0, 2, 1).reshape(b, c, h, w)
        return x + self.proj_out(o)


class VDown(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = conv(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VUp(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = conv(ch, ch)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch, g):
        super().__init__()
        self.block_1 = VResnetBlock(ch, ch, g)
        self.attn_1 = VAttnBlock(ch, g)
        self.block_2 = VResnetBlock(ch, ch, g)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, v: VAECfg):
        super().__init__()
        g = v.norm_groups
        self.conv_in = conv(v.in_channels, v.ch)
        self.down = nn.ModuleList()
        cin_mult = (1,) + tuple(v.ch_mult)
        ch = v.ch
        for i, m in enumerate(v.ch_mult):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            ci = v.ch * cin_mult[i]
            co = v.ch * m
            for _ in range(v.num_res_blocks):
                lvl.block.append(VResnetBlock(ci, co, g))
                ci = co
            lvl.attn = nn.ModuleList()
            if i != len(v.ch_mult) - 1:
                lvl.downsample = VDown(co)
            self.down.append(lvl)
            ch = co
        self.mid = _Mid(ch, g)
        self.norm_out = nn.GroupNorm(g, ch, eps=1e-6)
        self.conv_out = conv(ch, 2 * v.z_channels)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, v: VAECfg):
        super().__init__()
        g = v.norm_groups
        n = len(v.ch_mult)
        ch = v.ch * v.ch_mult[-1]
        self.conv_in = conv(v.z_channels, ch)
        self.mid = _Mid(ch, g)
        ups = []
        for i in reversed(range(n)):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            co = v.ch * v.ch_mult[i]
            for _ in range(v.num_res_blocks + 1):
                lvl.block.append(VResnetBlock(ch, co, g))
                ch = co
            lvl.attn = nn.ModuleList()
            if i != 0:
                lvl.upsample = VUp(ch)
            ups.insert(0, lvl)
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(g, ch, eps=1e-6)
        self.conv_out = conv(ch, v.out_ch)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, v: VAECfg):
        super().__init__()
        self.encoder = Encoder(v)
        self.decoder = Decoder(v)
        self.quant_conv = conv(2 * v.z_channels, 2 * v.embed_dim, 1, padding=0)
        self.post_quant_conv = conv(v.embed_dim, v.z_channels, 1, padding=0)
        self.embed_dim = v.embed_dim

    def encode_mean(self, x):
        return self.quant_conv(self.encoder(x))[:, : self.embed_dim]

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------------------- TAESD decoder

class _TBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(conv(cin, cout), nn.ReLU(), conv(cout, cout), nn.ReLU(), conv(cout, cout))
        self.skip = conv(cin, cout, 1, padding=0, bias=False) if cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv(x) + self.skip(x))


class _Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class TAESDDecoder(nn.Sequential):
    """Tiny AutoEncoder decoder (layer indices match the public taesd_decoder weights:
    0 clamp, 1 conv, 3..5 blocks, 6 upsample, 7 conv, ...). Input: UNet-space latents;
    output of the raw net is in [0, 1]."""

    def __init__(self, t: TAESDCfg):
        w = t.width
        layers = [_Clamp(), conv(t.latent_channels, w), nn.ReLU()]
        for _ in range(3):
            layers += [_TBlock(w, w), _TBlock(w, w), _TBlock(w, w),
                       nn.Upsample(scale_factor=2), conv(w, w, bias=False)]
        layers += [_TBlock(w, w), conv(w, 3)]
        super().__init__(*layers)


# ----------------------------------------------------------------------------- the whole model

class DiffusionWrapper(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.diffusion_model = UNetTrunk(cfg, output_blocks=True, out=True, motion=True, hint=False, zero_convs=False)


class XPortrait(nn.Module):
    """Container whose state-dict keys equal the published checkpoint's."""

    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.cfg = cfg
        self.model = DiffusionWrapper(cfg)
        self.appearance_control_model = UNetTrunk(cfg, output_blocks=True, out=False, motion=False, hint=True, zero_convs=False)
        self.pose_control_model = UNetTrunk(cfg, output_blocks=False, out=False, motion=False, hint=True, zero_convs=True)
        self.local_pose_control_model = UNetTrunk(cfg, output_blocks=False, out=False, motion=False, hint=True, zero_convs=True)
        self.first_stage_model = AutoencoderKL(cfg.vae)

    @property
    def unet(self) -> UNetTrunk:
        return self.model.diffusion_model
