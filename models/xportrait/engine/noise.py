"""The stream noise of the xportrait-lcm runtime, bit for bit as server/schedulers/lcm.ts makes it.

Both engines must see the same noise for the same seed, so that a frame rendered by the torch
engine equals the one the ONNX engine renders from the same weights and inputs. The generator is
mulberry32 (32-bit state, one uniform per step) with Box–Muller normals, both outputs used
(cos first, then sin), computed in float64 and stored as float32 — what `GaussianRng` in
lcm.ts does. mulberry32's state after i draws is seed + i·0x6D2B79F5 (mod 2³²), so the draws are
computed for a whole tensor at once with numpy's wrapping uint32 arithmetic.
"""
from __future__ import annotations

import math

import numpy as np

_M32 = 0xFFFFFFFF
_GOLDEN = 0x6D2B79F5


def _uniforms(state: int, count: int) -> np.ndarray:
    """The next `count` uniforms in [0, 1) of a mulberry32 generator whose state is `state`."""
    i = np.arange(1, count + 1, dtype=np.uint64)
    z = ((np.uint64(state) + i * np.uint64(_GOLDEN)) & np.uint64(_M32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint32(15))) * (z | np.uint32(1))
        z ^= z + (z ^ (z >> np.uint32(7))) * (z | np.uint32(61))
    return (z ^ (z >> np.uint32(14))).astype(np.float64) / 4294967296.0


class GaussianRng:
    """Port of lcm.ts GaussianRng: same seed, same sequence of float32 normals."""

    def __init__(self, seed: int):
        self.state = seed & _M32
        self.spare = None

    def _uniform_scalar(self) -> float:
        u = _uniforms(self.state, 1)[0]
        self.state = (self.state + _GOLDEN) & _M32
        return float(u)

    def fill(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.float32)
        k = 0
        if self.spare is not None and n > 0:
            out[0] = self.spare
            self.spare = None
            k = 1
        pairs = (n - k + 1) // 2
        if pairs:
            u = _uniforms(self.state, 2 * pairs)
            if (u[0::2] <= 1e-12).any():
                # a re-drawn Box–Muller radius (p ≈ 1e-12 per pair): follow lcm.ts draw by draw
                return self._fill_slow(out, k, n)
            self.state = (self.state + 2 * pairs * _GOLDEN) & _M32
            r = np.sqrt(-2.0 * np.log(u[0::2]))
            ang = 2.0 * math.pi * u[1::2]
            both = np.empty(2 * pairs, dtype=np.float64)
            both[0::2] = r * np.cos(ang)
            both[1::2] = r * np.sin(ang)
            take = n - k
            out[k:] = both[:take]
            if take < 2 * pairs:
                self.spare = float(np.float32(both[take]))
        return out

    def _fill_slow(self, out: np.ndarray, k: int, n: int) -> np.ndarray:
        for j in range(k, n):
            if self.spare is not None:
                out[j] = self.spare
                self.spare = None
                continue
            u = self._uniform_scalar()
            while u <= 1e-12:
                u = self._uniform_scalar()
            v = self._uniform_scalar()
            r = math.sqrt(-2.0 * math.log(u))
            self.spare = float(np.float32(r * math.sin(2.0 * math.pi * v)))
            out[j] = r * math.cos(2.0 * math.pi * v)
        return out


def _imul(a: int, b: int) -> int:
    return ((a & _M32) * (b & _M32)) & _M32


def fresh_seed(seed: int, frame: int, step: int) -> int:
    """lcm pipeline's per-(frame, step) seed for 'fresh' noise."""
    return (_imul(seed, 0x9E3779B1) ^ _imul(frame + 1, 0x85EBCA6B) ^ _imul(step + 1, 0xC2B2AE35)) & _M32


def fixed_noise(seed: int, steps: int, n: int) -> list:
    """'fixed' noise: one latent per step index, drawn in order from one generator."""
    rng = GaussianRng(seed)
    return [rng.fill(n) for _ in range(steps)]


def fresh_noise(seed: int, frame: int, step: int, n: int) -> np.ndarray:
    return GaussianRng(fresh_seed(seed, frame, step)).fill(n)
