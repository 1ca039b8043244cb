"""Python-side checks of the torch engine, driven by test/lcm/torch-python.test.ts. Prints one JSON
object.

  python3 -m models.xportrait.engine.selftest

  cache     the engine's in-place rolling cache == the full causal recompute (no cache, positions
            added before projection: stages.reference_video_eps) for several sink/ring splits,
            up to the 16-position window
  cfg       a CFG unconditional row == the plain UNet (no reference attention, no ControlNets) on
            the same latent and cache history; the guided ε is ε_u + g·(ε_c − ε_u)
  sdpa      the torch >= 2 path (scaled_dot_product_attention) — emulated here by a reference
            implementation on torch 1.13 — gives the plain path's ε
  window    a window over 16 positions is refused
  warmup    the bidirectional warm-up window == AnimateDiff's full clip attention at positions
            W−K+1..W; the row then holds those frames as streamed ones
"""
from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from .. import nn as xnn
from ..stages import geometry, pack, reference_video_eps, window_temporal
from .core import Engine, Item
from .streams import RowWindow
from .weights import load_model


def _history(e: Engine, rows, T, g, cond=True):
    """T frames through `rows` (one row each call), random latents/control; returns eps per frame."""
    L = e.latent_size
    S = e.image_size
    lat = torch.randn(T, 4, L, L, generator=g)
    ts = [[999, 759, 519, 279][i % 4] for i in range(T)]
    drv = torch.rand(T, 3, S, S, generator=g) * 2 - 1
    loc = torch.rand(T, 3, S, S, generator=g) * 2 - 1
    wins = {r: RowWindow(e.sink, e.ring) for r in rows}
    out = []
    for t in range(T):
        items = []
        for r in rows:
            slot, pos, bias = wins[r].advance()
            items.append(Item(row=r, x=lat[t], t=ts[t], cond=cond, drive=drv[t], local=loc[t], slot=slot, pos=pos, bias=bias))
        out.append(e.run(items))
    return lat, torch.tensor(ts), drv, loc, out


def cmd_cache(lm) -> dict:
    res = {}
    for sink, ring in ((1, 3), (2, 2), (0, 4), (1, 14)):
        e = Engine(lm, sink=sink, ring=ring)
        g = torch.Generator().manual_seed(7)
        L = e.latent_size
        ref_lat = torch.randn(4, L, L, generator=g)
        kv = e.reference(ref_lat, [999])[0]
        row = e.alloc_rows(1)
        e.set_reference_row(row, kv)
        T = sink + ring + 3                      # past the warm-up and around the ring
        lat, ts, drv, loc, eps = _history(e, [row], T, g)
        m = e.model
        ctrl = [a + b for a, b in zip(m.pose_control_model.forward_control(lat, drv, ts, e.context),
                                      m.local_pose_control_model.forward_control(lat, loc, ts, e.context))]
        geom = geometry(m)
        ref_kv = pack([t[None] for t in kv]).expand(T, -1)
        full = reference_video_eps(m, e.context, lat, ts, ref_kv, pack(ctrl), geom, sink, ring)
        got = torch.cat(eps)
        res[f"s{sink}r{ring}"] = {"frames": T, "max_abs_err": float((got - full).abs().max()),
                                  "max_abs_eps": float(full.abs().max())}
    return res


def cmd_cfg(lm) -> dict:
    e = Engine(lm)
    g = torch.Generator().manual_seed(8)
    L = e.latent_size
    kv = e.reference(torch.randn(4, L, L, generator=g), [999])[0]
    rc = e.alloc_rows(2)
    ru = rc + 1
    e.set_reference_row(rc, kv)
    wins = {rc: RowWindow(e.sink, e.ring), ru: RowWindow(e.sink, e.ring)}
    plain_caches = []
    errs, effect = [], []
    for t in range(6):
        x = torch.randn(4, L, L, generator=g)
        d = torch.rand(3, e.image_size, e.image_size, generator=g) * 2 - 1
        items = []
        for r, cond in ((rc, True), (ru, False)):
            slot, pos, bias = wins[r].advance()
            items.append(Item(row=r, x=x, t=999, cond=cond, drive=d if cond else None, local=d if cond else None,
                              slot=slot, pos=pos, bias=bias))
        eps = e.run(items)
        # the unconditional branch, the original way: no reference K/V, no control, its own history
        plain_caches.append(x)
        hist = torch.stack(plain_caches)
        ref = e.model.unet.forward_main(hist, torch.full((len(hist),), 999), e.context, None, None,
                                        lambda j, mm, h: mm.forward_video(h, e.sink, e.ring))
        errs.append(float((eps[1] - ref[-1]).abs().max()))
        effect.append(float((eps[0] - eps[1]).abs().max()))
    return {"max_abs_err_uncond_vs_plain": max(errs), "min_cond_uncond_gap": min(effect)}


_SDPA_CALLS = [0]


def _sdpa_reference(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    _SDPA_CALLS[0] += 1
    s = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return torch.matmul(torch.softmax(s, dim=-1), v)


def cmd_sdpa(lm) -> dict:
    g = torch.Generator().manual_seed(9)
    had = hasattr(F, "scaled_dot_product_attention")
    if not had:
        F.scaled_dot_product_attention = _sdpa_reference
    try:
        outs = []
        for on in (False, True):
            e = Engine(lm, fused_attention=on)   # the switch is global: one engine at a time
            fused = e.fused
            gg = torch.Generator().manual_seed(10)
            kv = e.reference(torch.randn(4, e.latent_size, e.latent_size, generator=gg), [759])[0]
            row = e.alloc_rows(1)
            e.set_reference_row(row, kv)
            outs.append(torch.cat(_history(e, [row], 5, gg)[4]))
        return {"native_sdpa": had, "fused_on": fused, "emulated_calls": _SDPA_CALLS[0],
                "max_abs_err": float((outs[0] - outs[1]).abs().max())}
    finally:
        if not had:
            del F.scaled_dot_product_attention
        xnn.use_fused_attention(False)


def cmd_warmup(lm) -> dict:
    """The warm-up window: its frames' ε == the UNet with full bidirectional temporal attention
    over the clip at positions W−K+1..W; afterwards the row holds them as streamed frames."""
    e = Engine(lm)
    g = torch.Generator().manual_seed(11)
    L, K = e.latent_size, 3
    kv = e.reference(torch.randn(4, L, L, generator=g), [999])[0]
    row = e.alloc_rows(1)
    e.set_reference_row(row, kv)
    win = RowWindow(e.sink, e.ring)
    slots, pos, bias, qpos = win.window(K)
    lat = torch.randn(K, 4, L, L, generator=g)
    drv = torch.rand(K, 3, e.image_size, e.image_size, generator=g) * 2 - 1
    items = [Item(row=row, x=lat[f], t=999, drive=drv[f], local=drv[f], slot=slots[f], pos=pos, bias=bias, qpos=qpos[f])
             for f in range(K)]
    got = e.run(items)
    m = e.model
    ts = torch.full((K,), 999)
    ctrl = [a + b for a, b in zip(m.pose_control_model.forward_control(lat, drv, ts, e.context),
                                  m.local_pose_control_model.forward_control(lat, drv, ts, e.context))]
    refs = [(kv[2 * j][None].expand(K, -1, -1), kv[2 * j + 1][None].expand(K, -1, -1)) for j in range(len(kv) // 2)]
    want = m.unet.forward_main(lat, ts, e.context, refs, ctrl, lambda j, mm, h: window_temporal(mm, h, torch.tensor(qpos)))
    nxt_bias = win.advance()[2]
    return {"max_abs_err": float((got - want).abs().max()), "max_abs_eps": float(want.abs().max()), "qpos": qpos,
            "next_visible": sum(1 for b in nxt_bias if b == 0.0), "refused_too_long": _refuses(e, e.W + 2)}


def _refuses(e, k) -> bool:
    from .streams import Stream, StreamOptions
    try:
        Stream(e, StreamOptions(steps=1, warmup=k))
        return False
    except ValueError:
        return True


def cmd_window(lm) -> dict:
    try:
        Engine(lm, sink=1, ring=15)
        return {"refused": False}
    except ValueError as err:
        return {"refused": True, "message": str(err)}


def main(argv) -> int:
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    lm = load_model("tiny", seed=3)
    out = {"cache": cmd_cache(lm), "cfg": cmd_cfg(lm), "sdpa": cmd_sdpa(lm), "window": cmd_window(lm),
           "warmup": cmd_warmup(lm)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
