"""CUDA graphs for the engine's per-step call, and optional torch.compile of its hot modules.

A call's shape — which pool rows, in which order, which of them conditional — decides every
kernel and every address (the pools are preallocated; pool views are baked into the graph), so
one graph is captured per (rows, branches) and replayed whenever the same rows run again: the
steady state of a set of streams is a handful of keys. Inputs are copied into the graph's static
buffers (latents and control images device to device; timesteps, slots, positions and masks —
a few hundred bytes — from the host). Growing the pools (a new stream) drops every graph.

Capture follows torch.cuda.graph's recipe: warm up on a side stream, then capture. The warm-up
runs execute the call for real; they are harmless because the only state a call writes is the
current frame's K/V into its own slot, the same values every time (the call is idempotent).
Anything that fails to capture runs eagerly from then on, with one log line.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..nn import FeedForward, ResBlock


class GraphCache:
    def __init__(self, engine, log, max_graphs: int = 24):
        self.e = engine
        self.log = log
        self.max = max_graphs
        self.cache: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle()
        self.generation = engine.generation
        self.failed = False
        self.captures = 0

    def clear(self):
        self.cache.clear()

    def _small(self, small, into=None):
        e = self.e
        out = {}
        for k, a in small.items():
            src = torch.from_numpy(a)
            if into is None:
                out[k] = src.to(e.device)
            else:
                into[k].copy_(src, non_blocking=False)
            e.io.h2d += a.nbytes
        return out

    def run(self, rows, cond, small, dev):
        e = self.e
        if e.generation != self.generation:
            self.cache.clear()
            self.generation = e.generation
        key = (rows, cond)
        entry = self.cache.get(key)
        if entry is None and not self.failed:
            entry = self._capture(key, small, dev)
        elif entry is not None:
            self.cache.move_to_end(key)
            graph, static, out = entry
            self._small(small, into=static)
            for k, v in dev.items():
                static[k].copy_(v)
            graph.replay()
        if entry is None:
            return e.forward(rows, cond, **dev, **self._small(small))
        return entry[2].clone()

    def _capture(self, key, small, dev):
        e = self.e
        rows, cond = key
        static = {k: v.clone() for k, v in dev.items()}
        static.update(self._small(small))
        try:
            side = torch.cuda.Stream(e.device)
            side.wait_stream(torch.cuda.current_stream(e.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    e.forward(rows, cond, **static)
            torch.cuda.current_stream(e.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                out = e.forward(rows, cond, **static)
            graph.replay()
        except Exception as err:  # noqa: BLE001 — eager from now on
            self.failed = True
            self.log(f"CUDA graph capture failed, running eagerly: {type(err).__name__}: {err}")
            return None
        self.captures += 1
        entry = (graph, static, out)
        self.cache[key] = entry
        while len(self.cache) > self.max:
            self.cache.popitem(last=False)
        return entry


def _guarded(orig, compiled, log, name):
    state = {"ok": True}

    def forward(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 — fall back to the eager module for good
                state["ok"] = False
                log(f"torch.compile failed for {name}, using eager: {type(err).__name__}: {err}")
        return orig(*args, **kwargs)
    return forward


def compile_modules(engine, log) -> int:
    """torch.compile every ResBlock and transformer feed-forward (module names are unchanged, so
    checkpoints still load). Returns how many were wrapped; 0 where torch has no compile."""
    if not hasattr(torch, "compile"):
        log("--compile: this torch has no torch.compile (needs >= 2.0); running eagerly")
        return 0
    n = 0
    for name, m in engine.model.named_modules():
        if isinstance(m, (ResBlock, FeedForward)):
            m.forward = _guarded(m.forward, torch.compile(m.forward, dynamic=False), log, name)
            n += 1
    log(f"torch.compile: {n} modules wrapped (compiled on first use)")
    return n
