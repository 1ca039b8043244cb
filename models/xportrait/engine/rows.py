"""The main UNet over a batch of *rows* — the torch engine's forward.

A row is one (stream, LCM step, CFG branch): it owns a slice of the engine's preallocated pools —
the temporal K/V cache of every motion-module attention and the reference K/V of every
transformer block. One call runs any set of rows together (frames of several sessions and
several steps), each with its own latent, timestep, cache and reference.

Temporal cache, in place: a row has W + 1 physical slots per attention (W = sink + ring past
frames + the current one). The current frame's position-free K/V are written into a free slot
(index_put, no shifting), then the frame attends over all W + 1 slots. Each slot's *position*
(what the ONNX graph gets by shifting the data) comes from a small per-row table `pos`, and empty
or evicted slots are masked by `bias`. AnimateDiff adds the sinusoidal code before the bias-free
projections, so K(x + pe[p]) = K(x) + K(pe[p]): the position terms are added to the scores and
outputs (q·K(pe[p]) and Σ a·V(pe[p]), tiny) instead of to the cache. The result equals the
ONNX graph's shift-and-concatenate form (stages.DenoiseStage) and the full causal recompute.

Pools are laid out [rows, tokens, heads, W + 1, head_dim], so the rows of a call that are
consecutive in the pool ("segments") are read as views: one batched matmul per segment, no copy of
the cache. Reference attention: keys/values are the row's own tokens followed by its reference
tokens, as upstream; an unconditional (CFG) row uses its own tokens twice, which is exactly plain
self-attention (duplicated keys keep every softmax weight ratio), so both branches batch together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..nn import ResBlock, SpatialTransformer, TemporalAttention, UNetTrunk

Segment = Tuple[int, int, int]   # (first pool row, first batch item, length)


def segments(rows: Sequence[int]) -> List[Segment]:
    """Runs of consecutive pool rows in batch order."""
    out: List[Segment] = []
    for b, r in enumerate(rows):
        if out and out[-1][0] + out[-1][2] == r:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + 1)
        else:
            out.append((r, b, 1))
    return out


class TemporalPool:
    """The cache of one temporal attention: K and V, [capacity, tokens, heads, W + 1, head_dim],
    plus its position projections K(pe[0..W]), V(pe[0..W]) (constants of the weights)."""

    def __init__(self, attn: TemporalAttention, tokens: int, channels: int, slots: int, capacity: int,
                 device, dtype):
        self.attn = attn
        self.heads = attn.heads
        self.dh = channels // attn.heads
        self.tokens = tokens
        self.slots = slots
        shape = (capacity, tokens, self.heads, slots, self.dh)
        # zeros, not empty(): a masked slot gets softmax weight exactly 0, and 0·NaN would be NaN
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        with torch.no_grad():
            pe = attn.pos_encoder.pe[0, :slots]
            self.pk = attn.to_k(pe)            # [W + 1, C]
            self.pv = attn.to_v(pe)

    @property
    def capacity(self) -> int:
        return self.k.shape[0]

    def grow(self, capacity: int):
        for name in ("k", "v"):
            old = getattr(self, name)
            new = torch.zeros((capacity,) + tuple(old.shape[1:]), device=old.device, dtype=old.dtype)
            new[: old.shape[0]].copy_(old)
            setattr(self, name, new)

    def bytes_per_row(self) -> int:
        return 2 * self.k[0].numel() * self.k.element_size()


@dataclass
class RowBatch:
    """Everything one call needs besides the latents and timesteps (tensors on the device)."""
    segs: List[Segment]
    rows: Sequence[int]                # the pool row of every item
    slot: torch.Tensor                 # [B] long: the physical slot the current frame is written to
    pos: torch.Tensor                  # [B, W + 1] long: position code of each physical slot
    bias: torch.Tensor                 # [B, W + 1]: 0 for a slot in the window, NEG_INF otherwise
    refs: List[Tuple[torch.Tensor, torch.Tensor]]   # per transformer block: K, V [B, N_ref, C]
    uncond: Optional[torch.Tensor]     # [B] 1.0 for CFG unconditional rows (None: every row conditional)
    # bidirectional warm-up: items are several frames of the same row, each attending to all of
    # them; qpos [B] is each frame's own position (its query's code)
    qpos: Optional[torch.Tensor] = None


def _temporal_window(pool: TemporalPool, h: torch.Tensor, rb: RowBatch) -> torch.Tensor:
    """Warm-up: the frames of a row attend to each other (bidirectionally) through the row's slots."""
    a = pool.attn
    B, n, c = h.shape
    heads, dh = pool.heads, pool.dh
    pe = a.pos_encoder.pe[0]
    q = a.to_q(h + pe[rb.qpos][:, None, :]).reshape(B, n, heads, dh)
    kn = a.to_k(h).reshape(B, n, heads, dh)
    vn = a.to_v(h).reshape(B, n, heads, dh)
    outs = []
    b0 = 0
    while b0 < B:
        r = rb.rows[b0]
        b1 = b0
        while b1 < B and rb.rows[b1] == r:
            b1 += 1
        K, V = pool.k[r], pool.v[r]                      # [n, heads, W + 1, dh]
        K[:, :, rb.slot[b0:b1]] = kn[b0:b1].permute(1, 2, 0, 3)
        V[:, :, rb.slot[b0:b1]] = vn[b0:b1].permute(1, 2, 0, 3)
        pk = pool.pk[rb.pos[b0]].reshape(-1, heads, dh)   # [W + 1, heads, dh], the same for the row's frames
        pv = pool.pv[rb.pos[b0]].reshape(-1, heads, dh)
        s = torch.einsum("fnhd,nhsd->fnhs", q[b0:b1], K + pk.permute(1, 0, 2)[None])
        s = s * (dh ** -0.5) + rb.bias[b0][None, None, None, :]
        o = torch.einsum("fnhs,nhsd->fnhd", torch.softmax(s, dim=-1), V + pv.permute(1, 0, 2)[None])
        outs.append(o)
        b0 = b1
    return a.to_out(torch.cat(outs).reshape(B, n, c))


def temporal_attention(pool: TemporalPool, h: torch.Tensor, rb: RowBatch) -> torch.Tensor:
    """One temporal self-attention of the current frame over its row's cache (h normed, [B, HW, C])."""
    if rb.qpos is not None:
        return _temporal_window(pool, h, rb)
    a = pool.attn
    B, n, c = h.shape
    heads, dh, S = pool.heads, pool.dh, pool.slots
    pe_cur = a.pos_encoder.pe[0, S - 1]
    q = a.to_q(h + pe_cur).reshape(B, n, heads, dh)
    kn = a.to_k(h).reshape(B, n, heads, dh)
    vn = a.to_v(h).reshape(B, n, heads, dh)
    pk = pool.pk[rb.pos].reshape(B, S, heads, dh)
    pv = pool.pv[rb.pos].reshape(B, S, heads, dh)
    scores = []
    for r0, b0, L in rb.segs:
        K = pool.k[r0:r0 + L]
        V = pool.v[r0:r0 + L]
        sel = torch.arange(L, device=h.device)
        K[sel, :, :, rb.slot[b0:b0 + L]] = kn[b0:b0 + L]
        V[sel, :, :, rb.slot[b0:b0 + L]] = vn[b0:b0 + L]
        qs = q[b0:b0 + L].reshape(L * n * heads, 1, dh)
        scores.append(torch.matmul(qs, K.reshape(L * n * heads, S, dh).transpose(1, 2)).reshape(L, n, heads, S))
    s = torch.cat(scores) if len(scores) > 1 else scores[0]
    s = (s + torch.einsum("bnhd,bwhd->bnhw", q, pk)) * (dh ** -0.5) + rb.bias[:, None, None, :]
    p = torch.softmax(s, dim=-1)
    outs = []
    for r0, b0, L in rb.segs:
        V = pool.v[r0:r0 + L]
        ps = p[b0:b0 + L].reshape(L * n * heads, 1, S)
        outs.append(torch.matmul(ps, V.reshape(L * n * heads, S, dh)).reshape(L, n, heads, dh))
    o = torch.cat(outs) if len(outs) > 1 else outs[0]
    o = o + torch.einsum("bnhw,bwhd->bnhd", p, pv)
    return a.to_out(o.reshape(B, n, c))


def motion_module(mm, x: torch.Tensor, pools: List[TemporalPool], rb: RowBatch) -> torch.Tensor:
    y = mm._pre(x)
    i = 0
    for blk in mm.temporal_transformer.transformer_blocks:
        for norm in blk.norms:
            y = temporal_attention(pools[i], norm(y), rb) + y
            i += 1
        y = blk.ff(blk.ff_norm(y)) + y
    return mm._post(y, x)


def _spatial(st: SpatialTransformer, x, context, rb: RowBatch, tb: List[int]):
    b, c, h, w = x.shape
    x_in = x
    y = st.proj_in(st.norm(x))
    y = y.reshape(b, y.shape[1], h * w).permute(0, 2, 1)
    for blk in st.transformer_blocks:
        # the block's own reference attention (nn.CrossAttention.forward_ref): K, V ++ the row's reference
        y = blk(y, context, ref=rb.refs[tb[0]] + ((rb.uncond,) if rb.uncond is not None else ()))
        tb[0] += 1
    y = y.permute(0, 2, 1).reshape(b, -1, h, w)
    return st.proj_out(y) + x_in


def _block(block, h, emb, context, rb, tb):
    for layer in block:
        if isinstance(layer, ResBlock):
            h = layer(h, emb)
        elif isinstance(layer, SpatialTransformer):
            h = _spatial(layer, h, context, rb, tb)
        else:
            h = layer(h)
    return h


def unet_rows(unet: UNetTrunk, x, t, context, ctrl: List[torch.Tensor], pools: List[List[TemporalPool]],
              rb: RowBatch) -> torch.Tensor:
    """eps for every row. ctrl: summed ControlNet residuals (input blocks…, middle), zeros for
    unconditional rows; pools[m]: the temporal pools of motion module m (input modules first)."""
    emb = unet.embed(t)
    ctrl = list(ctrl)
    tb = [0]
    hs = []
    h = x
    for i, blk in enumerate(unet.input_blocks):
        h = _block(blk, h, emb, context, rb, tb)
        if i in unet.in_mm_index:
            j = unet.in_mm_index[i]
            h = motion_module(unet.input_blocks_motion_module[j][0], h, pools[j], rb)
        hs.append(h)
    h = _block(unet.middle_block, h, emb, context, rb, tb) + ctrl.pop()
    n_in = len(unet.input_blocks_motion_module)
    for i, blk in enumerate(unet.output_blocks):
        h = _block(blk, torch.cat([h, hs.pop() + ctrl.pop()], 1), emb, context, rb, tb)
        h = motion_module(unet.output_blocks_motion_module[i][0], h, pools[n_in + i], rb)
    return unet.out(h)

