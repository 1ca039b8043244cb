"""One session's stream in the torch engine: its rows, the window bookkeeping of each row's cache,
its noise, its portrait reference, and the LCM pipeline — sequential steps or StreamDiffusion's
stream batch — with exactly the ONNX pipeline's arithmetic (server/renderers/xportrait-lcm/
pipeline.ts), so that both engines give the same frames from the same weights and inputs.

A frame is worked on in *phases*: each phase is one batched engine call shared with the other
streams that are ready. Sequential: phase k runs step k of the frame (n phases). Stream batch:
one phase whose items are frame f at step 0, f−1 at step 1, … (each on its own row), the last of
which finishes. CFG adds, per item, a twin on the row's unconditional partner; ε = ε_u + g·(ε_c − ε_u).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .core import Engine, Item
from ..nn import NEG_INF, window_slots
from .noise import fixed_noise, fresh_noise
from ..stages import lcm_timesteps


class RowWindow:
    """Which frame each of a row's W + 1 physical cache slots holds, and what the next frame sees.

    The frames visible to frame c, and the position of each, follow window_slots() — the rule
    the ONNX graph implements by shifting its cache: warm-up fills the positions just before the
    current one, then the first `sink` frames stay at positions 0.. and the ring holds the latest.
    Data never moves: the new frame takes a slot no visible frame occupies."""

    def __init__(self, sink: int, ring: int):
        self.sink, self.ring = sink, ring
        self.W = sink + ring
        self.reset()

    def reset(self):
        self.frames = [-1] * (self.W + 1)
        self.count = 0

    def advance(self) -> Tuple[int, List[int], List[float]]:
        c = self.count
        visible = window_slots(c, self.sink, self.ring)
        where = {f: p for p, f in enumerate(self.frames) if f >= 0}
        keep = {f for f, _ in visible}
        slot = next(p for p, f in enumerate(self.frames) if f < 0 or f not in keep)
        self.frames[slot] = c
        pos = [0] * (self.W + 1)
        bias = [NEG_INF] * (self.W + 1)
        for f, s in visible:
            pos[where[f]] = s
            bias[where[f]] = 0.0
        pos[slot] = self.W
        bias[slot] = 0.0
        self.count += 1
        return slot, pos, bias

    def window(self, k: int) -> Tuple[List[int], List[int], List[float], List[int]]:
        """A fresh row's first k frames at once (the bidirectional warm-up): frame f takes slot f at
        position W − (k − 1 − f) — where streaming would have put it when the last one is current —
        and the row continues as if they had been streamed. Returns (slots, pos, bias, query
        positions)."""
        assert self.count == 0 and 1 <= k <= self.W + 1
        qpos = [self.W - (k - 1 - f) for f in range(k)]
        pos = [0] * (self.W + 1)
        bias = [NEG_INF] * (self.W + 1)
        for f in range(k):
            self.frames[f] = f
            pos[f] = qpos[f]
            bias[f] = 0.0
        self.count = k
        return list(range(k)), pos, bias, qpos


@dataclass
class StreamOptions:
    steps: int = 2
    stream_batch: bool = False
    seed: int = 1
    noise: str = "fixed"          # fixed | fresh
    cfg: float = 1.0              # classifier-free guidance scale; ≤ 1 = off
    init: str = "noise"           # noise | portrait (the portrait latent noised to the first timestep)
    rule: str = "skip-step"       # LCM timestep rule: skip-step | linspace
    decoder: str = "taesd"        # taesd | vae
    output: str = "u8"            # u8 (RGB HWC) | f32 (CHW, as the ONNX pipeline returns it)
    warmup: int = 0               # bidirectional warm-up window: the first k frames denoised together (0 = off)

    def check(self, engine: Engine):
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 8):
            raise ValueError(f"steps must be 1..8, got {self.steps!r}")
        for name, allowed in (("noise", ("fixed", "fresh")), ("init", ("noise", "portrait")),
                              ("rule", ("skip-step", "linspace")), ("decoder", ("taesd", "vae")),
                              ("output", ("u8", "f32"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.decoder == "taesd" and engine.taesd is None:
            raise ValueError("decoder taesd: no TAESD weights were loaded (give --lcm-taesd FILE, or use the vae decoder)")
        if not (isinstance(self.cfg, (int, float)) and 0 <= self.cfg <= 20):
            raise ValueError(f"cfg must be a number in 0..20, got {self.cfg!r}")
        if not (isinstance(self.warmup, int) and (self.warmup == 0 or 2 <= self.warmup <= engine.W + 1)):
            raise ValueError(f"warmup must be 0 (off) or 2..{engine.W + 1} frames (the temporal window), got {self.warmup!r}")


class Portrait:
    """A portrait's reference K/V per step timestep and its latent (device tensors)."""

    def __init__(self, latent: torch.Tensor, kv: List[List[torch.Tensor]], timesteps: Sequence[int]):
        self.latent = latent
        self.kv = kv
        self.timesteps = list(timesteps)


@dataclass
class Work:
    frame: int
    x: torch.Tensor
    drive: torch.Tensor
    local: torch.Tensor


class Stream:
    def __init__(self, engine: Engine, opts: StreamOptions):
        opts.check(engine)
        self.e = engine
        self.o = opts
        self.n = opts.steps
        self.cfg = opts.cfg > 1.0
        self.stream_batch = opts.stream_batch and self.n > 1
        self.timesteps = lcm_timesteps(self.n, opts.rule)
        self.nrows = self.n * (2 if self.cfg else 1)
        self.base = engine.alloc_rows(self.nrows)
        self.windows = [RowWindow(engine.sink, engine.ring) for _ in range(self.nrows)]
        self.portrait: Optional[Portrait] = None
        self._fixed: Optional[List[torch.Tensor]] = None
        self.frames_pushed = 0
        self.reset()

    def close(self):
        self.e.free_rows(self.base, self.nrows)
        self.nrows = 0

    def row(self, k: int, uncond: bool = False) -> int:
        return self.base + k + (self.n if uncond else 0)

    def reset(self):
        for w in self.windows:
            w.reset()
        self.frame = 0
        self.pending: List[Optional[Work]] = [None] * self.n
        self.cur: Optional[Work] = None
        self.phase_items: List[Tuple[int, Work]] = []
        self.finished: Optional[Tuple[int, torch.Tensor]] = None
        self.held: List[Work] = []            # warm-up frames waiting for the window to fill

    def use(self, portrait: Portrait):
        """Installs a portrait's K/V in this stream's rows and starts a fresh stream."""
        if portrait.timesteps != self.timesteps:
            raise ValueError("reference computed for another step schedule")
        for k in range(self.n):
            self.e.set_reference_row(self.row(k), portrait.kv[k])
        self.portrait = portrait
        self.reset()

    # ------------------------------------------------------------------------------ noise

    def noise(self, frame: int, k: int) -> torch.Tensor:
        L = self.e.latent_size
        if self.o.noise == "fresh":
            return self.e.upload(fresh_noise(self.o.seed, frame, k, 4 * L * L)).reshape(4, L, L)
        if self._fixed is None:
            self._fixed = [self.e.upload(z).reshape(4, L, L) for z in fixed_noise(self.o.seed, self.n, 4 * L * L)]
        return self._fixed[k]

    def _renoise(self, den: torch.Tensor, frame: int, k: int) -> torch.Tensor:
        a, b = self.e.coef(self.timesteps[k])
        return a * den + b * self.noise(frame, k)

    def _initial(self, frame: int) -> torch.Tensor:
        z = self.noise(frame, 0)
        if self.o.init == "portrait":
            a, b = self.e.coef(self.timesteps[0])
            return a * self.portrait.latent + b * z
        return z

    # ------------------------------------------------------------------------------ phases

    def begin(self, drive: torch.Tensor, local: torch.Tensor):
        if self.portrait is None:
            raise ValueError("push before a reference was set")
        f = self.frame
        self.frame += 1
        self.frames_pushed += 1
        self.cur = Work(f, self._initial(f), drive, local)
        self.finished = None
        if self.o.warmup and f < self.o.warmup:
            self.held.append(self.cur)

    @property
    def warming_up(self) -> bool:
        """This frame is part of the warm-up window (held, or the window's last frame)."""
        return bool(self.held)

    def phases(self) -> int:
        if self.warming_up:
            return self.n if len(self.held) == self.o.warmup else 0
        return 1 if self.stream_batch else self.n

    def items(self, j: int) -> List[Item]:
        """The rows this stream runs in phase j (empty when it has no work there). In the warm-up
        phase k all the window's frames run at step k on row k, attending to each other."""
        if self.warming_up:
            return self._window_items(j)
        if self.stream_batch:
            work = [(0, self.cur)] + [(k, self.pending[k]) for k in range(1, self.n) if self.pending[k] is not None]
        else:
            work = [(j, self.cur)] if j < self.n else []
        self.phase_items = work
        out = []
        for k, w in work:
            out.append(self._item(k, w, False))
            if self.cfg:
                out.append(self._item(k, w, True))
        return out

    def _item(self, k: int, w: Work, uncond: bool) -> Item:
        r = self.row(k, uncond)
        slot, pos, bias = self.windows[r - self.base].advance()
        return Item(row=r, x=w.x, t=self.timesteps[k], cond=not uncond, drive=None if uncond else w.drive,
                    local=None if uncond else w.local, slot=slot, pos=pos, bias=bias)

    def _window_items(self, k: int) -> List[Item]:
        self.phase_items = [(k, w) for w in self.held]
        out = []
        for uncond in ((False, True) if self.cfg else (False,)):
            r = self.row(k, uncond)
            slots, pos, bias, qpos = self.windows[r - self.base].window(len(self.held))
            for w, slot, q in zip(self.held, slots, qpos):
                out.append(Item(row=r, x=w.x, t=self.timesteps[k], cond=not uncond, drive=None if uncond else w.drive,
                                local=None if uncond else w.local, slot=slot, pos=pos, bias=bias, qpos=q))
        return out

    def complete(self, eps: List[torch.Tensor]):
        """Takes the ε of this stream's items of the phase (in items() order)."""
        if self.warming_up:
            return self._complete_window(eps)
        step = 2 if self.cfg else 1
        nxt: List[Optional[Work]] = [None] * self.n
        for i, (k, w) in enumerate(self.phase_items):
            e = eps[i * step]
            if self.cfg:
                eu = eps[i * step + 1]
                e = eu + self.o.cfg * (e - eu)
            den = self.e.denoised(w.x, e, self.timesteps[k])
            if k == self.n - 1:
                self.finished = (w.frame, den)
            elif self.stream_batch:
                nxt[k + 1] = Work(w.frame, self._renoise(den, w.frame, k + 1), w.drive, w.local)
            else:
                self.cur = Work(w.frame, self._renoise(den, w.frame, k + 1), w.drive, w.local)
        if self.stream_batch:
            self.pending = nxt
        self.phase_items = []

    def _complete_window(self, eps: List[torch.Tensor]):
        """ε of the window's frames (conditional ones first, then their CFG twins); the last step
        finishes the window's last frame and the stream goes on streaming."""
        m = len(self.held)
        k = self.phase_items[0][0]
        for i, w in enumerate(self.held):
            e = eps[i]
            if self.cfg:
                e = eps[m + i] + self.o.cfg * (e - eps[m + i])
            den = self.e.denoised(w.x, e, self.timesteps[k])
            if k == self.n - 1:
                self.finished = (w.frame, den)
            else:
                w.x = self._renoise(den, w.frame, k + 1)
        if k == self.n - 1:
            self.held = []
        self.phase_items = []

    def cache_view(self, k: int, uncond: bool = False):
        """Step k's cache in the ONNX layout (tests): [W, F] float32 with its mask [W] — slot s
        holds the frame at position s, as the ONNX graph's shifted cache does."""
        r = self.row(k, uncond)
        win = self.windows[r - self.base]
        W = self.e.W
        frames_at = {}
        if win.count > 0:
            for f, s in window_slots(win.count, self.e.sink, self.e.ring):
                frames_at[s] = win.frames.index(f)
        parts, mask = [], np.zeros(W, dtype=np.float32)
        for s in range(W):
            seg = []
            for mp in self.e.pools:
                for p in mp:
                    for t in (p.k, p.v):
                        if s in frames_at:
                            v = t[r, :, :, frames_at[s]].reshape(p.tokens, -1)
                        else:
                            v = torch.zeros(p.tokens, p.heads * p.dh, dtype=t.dtype, device=t.device)
                        seg.append(v.float().reshape(-1))
            parts.append(torch.cat(seg))
            mask[s] = 1.0 if s in frames_at else 0.0
        return torch.stack(parts).cpu().numpy(), mask
