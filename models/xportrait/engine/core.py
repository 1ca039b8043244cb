"""The torch engine: the X-Portrait network on one device, every stream's state in preallocated
device pools, and one batched call per LCM step for any set of rows (see rows.py).

What lives on the device, per row (stream × step × CFG branch): the temporal K/V cache of every
motion-module attention (W + 1 slots, updated in place) and the reference K/V of every transformer
block (copied in when the stream's portrait changes). Per portrait: its reference K/V per step
timestep and its latent. What crosses the bus per frame: the driving crop (uint8) up, the decoded
frame (uint8) down, and a few hundred bytes of per-row indices (timestep, slot, positions, mask),
all counted in `io`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..nn import XPortrait, use_fused_attention
from .rows import RowBatch, TemporalPool, segments, unet_rows
from ..stages import MAX_WINDOW, lcm_schedule
from .weights import LoadedModel


@dataclass
class Item:
    """One row's work in a call: its input latent at this step and what conditions it."""
    row: int
    x: torch.Tensor                      # [4, h, w] float32, on the device
    t: int
    cond: bool = True                    # False: the CFG unconditional branch (no reference, no control)
    drive: Optional[torch.Tensor] = None  # [3, S, S] (conditional rows)
    local: Optional[torch.Tensor] = None
    slot: int = 0
    pos: Sequence[int] = ()
    bias: Sequence[float] = ()
    qpos: int = -1                       # warm-up frames: the frame's own position (else the current one's)


@dataclass
class Io:
    h2d: int = 0          # bytes host → device that are not frame pixels
    d2h: int = 0
    frame_h2d: int = 0    # the driving crop
    frame_d2h: int = 0    # the decoded frame
    calls: int = 0
    rows: int = 0
    ms: Dict[str, float] = field(default_factory=dict)


class Engine:
    def __init__(self, lm: LoadedModel, *, device: str = "cpu", dtype: torch.dtype = torch.float32, sink: int = 1,
                 ring: int = 3, rule: str = "skip-step", fused_attention: bool = True, log=lambda m: None):
        if sink < 0 or ring < 1:
            raise ValueError("sink must be >= 0 and ring >= 1")
        if sink + ring + 1 > MAX_WINDOW:
            raise ValueError(f"temporal window sink + ring + 1 = {sink + ring + 1} exceeds the {MAX_WINDOW} positions "
                             f"the motion modules were trained on")
        torch.set_grad_enabled(False)
        self.cfg = lm.cfg
        self.source = lm.source
        self.device = torch.device(device)
        self.dtype = dtype
        self.sink, self.ring = sink, ring
        self.W = sink + ring
        self.slots = self.W + 1
        self.log = log
        self.fused = use_fused_attention(fused_attention)
        self.model: XPortrait = lm.model.to(self.device, dtype).eval()
        self.taesd = lm.taesd.to(self.device, dtype).eval() if lm.taesd is not None else None
        self.context = lm.context.to(self.device, dtype)
        sched, ac = lcm_schedule(rule=rule)
        self.schedule = sched
        # ᾱ in float64 for the re-noise coefficients (as the scheduler computes them) and float32
        # for the boundary condition (as the denoise graph computes it)
        betas = torch.linspace(sched["beta_start"] ** 0.5, sched["beta_end"] ** 0.5, 1000, dtype=torch.float64) ** 2
        self.alphas64 = torch.cumprod(1.0 - betas, 0)
        self.alphas32 = ac.to(torch.float32)
        self.image_size = self.cfg.image_size
        self.latent_size = self.cfg.latent_size
        self.io = Io()
        self.profile = False
        unet = self.model.unet
        self._tblocks = unet.transformer_blocks()
        self._mods = unet.motion_modules()
        self._probe_shapes()
        self.capacity = 0
        self.pools: List[List[TemporalPool]] = []
        self.ref_k: List[torch.Tensor] = []
        self.ref_v: List[torch.Tensor] = []
        self.used = np.zeros(0, dtype=bool)
        self.generation = 0            # bumped when the pools are reallocated (CUDA graphs hold their addresses)
        self.graphs = None
        # a call shape seen for the first time captures a CUDA graph / compiles: slow, and not a
        # hang — the heartbeat reports it as warming
        self.seen = set()
        self.warming = False
        self._cond_index = {}
        self._grow(2)

    # ------------------------------------------------------------------------------ geometry, pools

    def _probe_shapes(self):
        """Tokens × channels at each motion module and transformer block, from one dry run."""
        L = self.latent_size
        x = torch.zeros(1, 4, L, L, device=self.device, dtype=self.dtype)
        t = torch.zeros(1, dtype=torch.long, device=self.device)
        bank = self.model.appearance_control_model.forward_bank(x, t, self.context)
        self.ref_shapes = [tuple(b.shape[1:]) for b in bank]
        mm_shapes = {}

        def probe(j, mm, h):
            mm_shapes[j] = (h.shape[2] * h.shape[3], h.shape[1])
            return h
        refs = [(torch.zeros(1, 0, c, device=self.device, dtype=self.dtype),) * 2 for _, c in self.ref_shapes]
        self.model.unet.forward_main(x, t, self.context, refs, None, probe)
        self.mm_shapes = [mm_shapes[j] for j in sorted(mm_shapes)]

    def _grow(self, capacity: int):
        old = self.capacity
        if capacity <= old:
            return
        if not self.pools:
            self.pools = [[TemporalPool(blk.attention_blocks[i], n, c, self.slots, capacity, self.device, self.dtype)
                           for blk in mm.temporal_transformer.transformer_blocks for i in range(len(blk.attention_blocks))]
                          for mm, (n, c) in zip(self._mods, self.mm_shapes)]
            self.ref_k = [torch.zeros((capacity,) + s, device=self.device, dtype=self.dtype) for s in self.ref_shapes]
            self.ref_v = [torch.zeros((capacity,) + s, device=self.device, dtype=self.dtype) for s in self.ref_shapes]
        else:
            for mp in self.pools:
                for p in mp:
                    p.grow(capacity)
            for lst in (self.ref_k, self.ref_v):
                for j, t in enumerate(lst):
                    n = torch.zeros((capacity,) + tuple(t.shape[1:]), device=t.device, dtype=t.dtype)
                    n[:old].copy_(t)
                    lst[j] = n
        self.used = np.concatenate([self.used, np.zeros(capacity - old, dtype=bool)])
        self.capacity = capacity
        self.generation += 1
        if self.graphs is not None:
            self.graphs.clear()

    def row_bytes(self) -> int:
        """Device bytes of one row: its temporal caches and its reference K/V."""
        cache = sum(p.bytes_per_row() for mp in self.pools for p in mp)
        ref = sum(2 * t[0].numel() * t.element_size() for t in self.ref_k)
        return cache + ref

    def alloc_rows(self, n: int) -> int:
        """The first free run of n consecutive rows (the pools grow when none is free)."""
        run = 0
        for r in range(self.capacity):
            run = run + 1 if not self.used[r] else 0
            if run == n:
                base = r - n + 1
                self.used[base:base + n] = True
                return base
        tail = 0
        while tail < self.capacity and not self.used[self.capacity - 1 - tail]:
            tail += 1
        base = self.capacity - tail
        self._grow(max(base + n, 2 * self.capacity))
        self.used[base:base + n] = True
        return base

    def free_rows(self, base: int, n: int):
        self.used[base:base + n] = False

    def rows_in_use(self) -> int:
        return int(self.used.sum())

    # ------------------------------------------------------------------------------ host ↔ device

    def upload(self, arr: np.ndarray, frame: bool = False) -> torch.Tensor:
        t = torch.from_numpy(arr)
        if self.device.type != "cpu":
            t = t.to(self.device, non_blocking=False)
        if frame:
            self.io.frame_h2d += arr.nbytes
        else:
            self.io.h2d += arr.nbytes
        return t

    def download(self, t: torch.Tensor, frame: bool = False) -> np.ndarray:
        a = t.detach().to("cpu").contiguous().numpy()
        if frame:
            self.io.frame_d2h += a.nbytes
        else:
            self.io.d2h += a.nbytes
        return a

    def pixels_in(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 RGB [S, S, 3] → [3, S, S] in [−1, 1] (the ONNX engine's x/127.5 − 1)."""
        t = self.upload(rgb, frame=True)
        return (t.permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0).to(self.dtype)

    # ------------------------------------------------------------------------------ portrait

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[3, S, S] in [−1, 1] → UNet-space latent [4, h, w] float32 (VAE posterior mean × scale)."""
        t0 = self._tick()
        vae = self.model.first_stage_model
        out = (vae.encode_mean(img[None].to(self.dtype)) * self.cfg.vae.scale_factor)[0].float()
        self._tick("vae_encode", t0)
        return out

    def reference(self, latent: torch.Tensor, timesteps: Sequence[int]) -> List[List[torch.Tensor]]:
        """Per step timestep: [K_0, V_0, K_1, V_1, …] ([N_j, C_j]) of every main-UNet transformer
        block, projected from the ReferenceNet's bank at that timestep (as ReferenceStage)."""
        out = []
        t0 = self._tick()
        x = latent[None].to(self.dtype)
        for t in timesteps:
            bank = self.model.appearance_control_model.forward_bank(
                x, torch.tensor([t], device=self.device), self.context)
            kv = []
            for n, blk in zip(bank, self._tblocks):
                kv += [blk.attn1.to_k(n)[0], blk.attn1.to_v(n)[0]]
            out.append(kv)
        self._tick("reference", t0)
        return out

    def set_reference_row(self, row: int, kv: List[torch.Tensor]):
        for j in range(len(self.ref_k)):
            self.ref_k[j][row].copy_(kv[2 * j])
            self.ref_v[j][row].copy_(kv[2 * j + 1])

    def decode(self, latents: torch.Tensor, decoder: str) -> torch.Tensor:
        """[B, 4, h, w] → [B, 3, S, S] float32, nominally [−1, 1] (VAE output not clamped)."""
        t0 = self._tick()
        x = latents.to(self.dtype)
        if decoder == "taesd":
            out = (self.taesd(x) * 2.0 - 1.0).float()
        else:
            out = self.model.first_stage_model.decode(x / self.cfg.vae.scale_factor).float()
        self._tick(decoder, t0)
        return out

    # ------------------------------------------------------------------------------ one step, batched

    def run(self, items: List[Item]) -> torch.Tensor:
        """ε for every item (float32 [B, 4, h, w], in the items' order): ControlNets on the
        conditional rows, then the main UNet over all rows with their caches and references."""
        t0 = time.perf_counter()
        order = sorted(range(len(items)), key=lambda i: items[i].row)
        its = [items[i] for i in order]
        rows = tuple(it.row for it in its)
        cond = tuple(it.cond for it in its)
        if (self.generation, rows, cond) not in self.seen:
            self.seen.add((self.generation, rows, cond))
            self.warming = True
        window = any(it.qpos >= 0 for it in its)
        self._branches(cond)
        small = {
            "t": np.array([it.t for it in its], dtype=np.int64),
            "slot": np.array([it.slot for it in its], dtype=np.int64),
            "pos": np.array([list(it.pos) for it in its], dtype=np.int64),
            "bias": np.array([list(it.bias) for it in its], dtype=np.float32),
        }
        dev = {
            "x": torch.stack([it.x for it in its]),
            "drive": torch.stack([it.drive for it in its if it.cond]),
            "local": torch.stack([it.local for it in its if it.cond]),
        }
        if window:
            small["qpos"] = np.array([it.qpos for it in its], dtype=np.int64)
        if self.graphs is not None and not window and not self.profile:
            eps = self.graphs.run(rows, cond, small, dev)
        else:   # warm-up windows run once per stream start: eagerly
            for k, a in small.items():
                dev[k] = self.upload(a)
            eps = self.forward(rows, cond, **dev)
        self.io.calls += 1
        self.io.rows += len(its)
        if self.profile:
            self.sync()
            self._add_ms("step", t0)
        if order == sorted(order):
            return eps
        back = torch.empty_like(eps)
        back[self.upload(np.array(order, dtype=np.int64))] = eps
        return back

    def _branches(self, cond):
        """The conditional rows' indices and the unconditional mask of a CFG call, made once per
        pattern and kept: a CUDA graph may not copy from the host while it is captured."""
        if all(cond):
            return None, None
        got = self._cond_index.get(cond)
        if got is None:
            got = (self.upload(np.array([i for i, c in enumerate(cond) if c], dtype=np.int64)),
                   self.upload(np.array([0.0 if c else 1.0 for c in cond], dtype=np.float32)).to(self.dtype))
            self._cond_index[cond] = got
        return got

    def forward(self, rows, cond, x, t, drive, local, slot, pos, bias, qpos=None) -> torch.Tensor:
        """The step as pure tensor code (captured as a CUDA graph by graphs.py)."""
        m = self.model
        B = x.shape[0]
        xd = x.to(self.dtype)
        cidx, uncond = self._branches(cond)
        xc, tc = (xd, t) if cidx is None else (xd.index_select(0, cidx), t.index_select(0, cidx))
        t0 = self._tick()
        a = m.pose_control_model.forward_control(xc, drive, tc, self.context)
        b = m.local_pose_control_model.forward_control(xc, local, tc, self.context)
        ctrl = [p + q for p, q in zip(a, b)]
        t0 = self._tick("control", t0)
        if cidx is not None:
            ctrl = [xd.new_zeros((B,) + tuple(r.shape[1:])).index_copy_(0, cidx, r) for r in ctrl]
        segs = segments(rows)

        def gather(pool):
            parts = [pool[r0:r0 + L] for r0, _, L in segs]
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        refs = [(gather(k), gather(v)) for k, v in zip(self.ref_k, self.ref_v)]
        rb = RowBatch(segs, rows, slot, pos, bias.to(self.dtype), refs, uncond, qpos)
        eps = unet_rows(m.unet, xd, t, self.context, ctrl, self.pools, rb).float()
        self._tick("unet", t0)
        return eps

    # ------------------------------------------------------------------------------ profiling

    def _add_ms(self, stage: str, t0: float):
        self.io.ms[stage] = self.io.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1000

    def _tick(self, stage: Optional[str] = None, t0: float = 0.0) -> float:
        """With `profile` on (eager only): synchronise and add the time since t0 to `stage`."""
        if not self.profile:
            return 0.0
        self.sync()
        if stage:
            self._add_ms(stage, t0)
        return time.perf_counter()

    # ------------------------------------------------------------------------------ LCM arithmetic

    def denoised(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """LCM boundary condition c_skip·x + c_out·x̂0, in float32 as the denoise graph computes it."""
        a = self.alphas32[t]
        x0 = (x - torch.sqrt(1.0 - a) * eps) / torch.sqrt(a)
        st = np.float32(t) * np.float32(self.schedule["timestep_scaling"])
        sd = np.float32(self.schedule["sigma_data"])
        c_skip = float(sd * sd / (st * st + sd * sd))
        c_out = float(st / np.sqrt(st * st + sd * sd))
        return c_skip * x + c_out * x0

    def coef(self, t: int):
        """(√ᾱ_t, √(1−ᾱ_t)) in float64, as the scheduler re-noises."""
        a = float(self.alphas64[t])
        return a ** 0.5, (1.0 - a) ** 0.5

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
