"""The torch worker's engine thread: requests in arrival order, frames batched across streams.

Every op but `ping` lands here (serve.py's reader threads queue them). Ops run in arrival order,
except that consecutive `push`es of different streams are gathered into one *tick*: their frames
go through the engine together, one batched call per phase (see streams.py), and one batched
decode. An op of a stream that has a frame in the gathered tick runs the tick first, so each
stream still sees its ops in order. A failing tick fails (and resets) only the streams in it.
"""
from __future__ import annotations

import queue
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from .busy import BusyClock
from .core import Engine
from .protocol import BadRequest, Connection
from .streams import Portrait, Stream, StreamOptions

OPTION_FIELDS = {f for f in StreamOptions.__dataclass_fields__}


class Dispatcher:
    def __init__(self, engine: Engine, *, batch_wait_ms: float = 0.0, debug_ops: bool = False, log=print):
        self.e = engine
        self.q: "queue.Queue[Tuple[Connection, dict, bytearray]]" = queue.Queue()
        self.streams: Dict[int, Stream] = {}
        self.owner: Dict[int, Connection] = {}
        self.refs: Dict[Tuple[int, int], Portrait] = {}
        self.next_id = 1
        self.batch_wait = batch_wait_ms / 1000.0
        self.debug_ops = debug_ops
        self.log = log
        self.busy = BusyClock()
        self.stats = {"frames": 0, "ticks": 0, "calls": 0, "rows": 0, "opened": 0, "failed_ticks": 0}

    # ------------------------------------------------------------------------------ queue side

    def submit(self, conn: Connection, header: dict, payload: bytearray):
        self.q.put((conn, header, payload))

    def closed(self, conn: Connection):
        self.q.put((conn, {"op": "_closed"}, bytearray()))

    def loop(self):
        """The engine thread: forever take what is queued and run it."""
        held: List[Tuple[Connection, dict, bytearray]] = []
        while True:
            if not held:
                held.append(self.q.get())
            while True:
                try:
                    held.append(self.q.get_nowait())
                except queue.Empty:
                    break
            if self.batch_wait > 0 and self._waiting_for_more(held):
                deadline = time.monotonic() + self.batch_wait
                while self._waiting_for_more(held) and time.monotonic() < deadline:
                    try:
                        held.append(self.q.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
            self.busy.start()
            try:
                held = self._run(held)
            finally:
                self.busy.stop()
                self.e.warming = False

    def _waiting_for_more(self, held) -> bool:
        pushing = {h.get("stream") for _, h, _ in held if h.get("op") == "push"}
        return 0 < len(pushing) < len(self.streams)

    def _run(self, held):
        tick: Dict[int, Tuple[Connection, dict, bytearray]] = {}
        for i, (conn, h, p) in enumerate(held):
            sid = h.get("stream")
            if h.get("op") == "push" and sid not in tick:
                tick[sid] = (conn, h, p)
                continue
            if sid in tick or (h.get("op") == "_closed" and conn.streams & set(tick)):
                # this stream's later op waits for its frame: run the tick, keep the rest queued
                self._tick(tick)
                return held[i:]
            self._one(conn, h, p)
        if tick:
            self._tick(tick)
        return []

    # ------------------------------------------------------------------------------ single ops

    def _stream(self, conn: Connection, h: dict) -> Stream:
        sid = h.get("stream")
        s = self.streams.get(sid)
        if s is None or self.owner.get(sid) is not conn:
            raise BadRequest(f"unknown stream {sid!r}", "not_found")
        return s

    def _crop(self, payload: bytearray) -> np.ndarray:
        S = self.e.image_size
        if len(payload) != S * S * 3:
            raise BadRequest(f"payload must be one {S}x{S} RGB frame ({S * S * 3} bytes), got {len(payload)}")
        return np.frombuffer(payload, dtype=np.uint8).reshape(S, S, 3)

    def _one(self, conn: Connection, h: dict, p: bytearray):
        op, rid = h.get("op"), h.get("id")
        try:
            fn = getattr(self, f"op_{op}", None) if isinstance(op, str) and not op.startswith("_") else None
            if op == "_closed":
                return self._drop(conn)
            if fn is None:
                raise BadRequest(f"unknown op {op!r}")
            fields, payload = fn(conn, h, p) or ({}, b"")
            conn.reply(rid, payload, **fields)
        except BadRequest as e:
            conn.error(rid, e.code, str(e))
        except Exception as e:  # noqa: BLE001 — the worker must outlive one failed request
            self.log(f"op {op} failed: {type(e).__name__}: {e}")
            conn.error(rid, "internal", f"{type(e).__name__}: {e}")

    def _drop(self, conn: Connection):
        for sid in list(conn.streams):
            self._close_stream(sid)
        conn.streams.clear()

    def _close_stream(self, sid: int):
        s = self.streams.pop(sid, None)
        self.owner.pop(sid, None)
        for key in [k for k in self.refs if k[0] == sid]:
            del self.refs[key]
        if s is not None:
            s.close()

    def op_hello(self, conn, h, p):
        return {"info": self.info()}, b""

    def op_open(self, conn, h, p):
        o = h.get("options") or {}
        if not isinstance(o, dict) or set(o) - OPTION_FIELDS:
            raise BadRequest(f"options must be a map with keys among {sorted(OPTION_FIELDS)}")
        try:
            s = Stream(self.e, StreamOptions(**o))
        except (ValueError, TypeError) as e:
            raise BadRequest(str(e)) from e
        sid = self.next_id
        self.next_id += 1
        self.streams[sid] = s
        self.owner[sid] = conn
        conn.streams.add(sid)
        self.stats["opened"] += 1
        return {"stream": sid, "info": self.info(), "timesteps": s.timesteps, "rows": s.nrows}, b""

    def op_close(self, conn, h, p):
        self._stream(conn, h)
        conn.streams.discard(h["stream"])
        self._close_stream(h["stream"])
        return {}, b""

    def op_encode_reference(self, conn, h, p):
        s = self._stream(conn, h)
        img = self.e.pixels_in(self._crop(p))
        latent = self.e.encode(img)
        ref = Portrait(latent, self.e.reference(latent, s.timesteps), s.timesteps)
        rid = self.next_id
        self.next_id += 1
        self.refs[(h["stream"], rid)] = ref
        return {"ref": rid}, b""

    def _ref(self, h) -> Portrait:
        ref = self.refs.get((h.get("stream"), h.get("ref")))
        if ref is None:
            raise BadRequest(f"unknown reference {h.get('ref')!r}", "not_found")
        return ref

    def op_use_reference(self, conn, h, p):
        self._stream(conn, h).use(self._ref(h))
        return {}, b""

    def op_release_reference(self, conn, h, p):
        s = self._stream(conn, h)
        ref = self.refs.pop((h["stream"], h.get("ref")), None)
        if ref is not None and s.portrait is ref:
            s.portrait = None
        return {}, b""

    def op_reset(self, conn, h, p):
        self._stream(conn, h).reset()
        return {}, b""

    def op_inspect_cache(self, conn, h, p):
        s = self._stream(conn, h)
        k = h.get("step", 0)
        if not (isinstance(k, int) and 0 <= k < s.n):
            raise BadRequest(f"step must be 0..{s.n - 1}")
        cache, mask = s.cache_view(k, bool(h.get("uncond", False)))
        return {"mask": mask.tolist(), "slots": int(cache.shape[0])}, cache.astype(np.float32).tobytes()

    def op_stats(self, conn, h, p):
        return {"stats": self.status()}, b""

    def op_profile(self, conn, h, p):
        """Per-stage timing on (eager, synchronised after each stage: slower) or off; resets the sums."""
        self.e.profile = bool(h.get("on"))
        self.e.io.ms = {}
        return {"profile": self.e.profile}, b""

    def op_debug(self, conn, h, p):
        if not self.debug_ops:
            raise BadRequest("unknown op 'debug'")
        if h.get("action") == "hang":
            while True:
                time.sleep(3600)
        raise BadRequest(f"unknown debug action {h.get('action')!r}")

    # ------------------------------------------------------------------------------ frames

    def _parse_push(self, conn, h, p):
        s = self._stream(conn, h)
        crop = self._crop(p)
        boxes = h.get("boxes")
        S = self.e.image_size
        if not (isinstance(boxes, list) and len(boxes) <= 8 and all(
                isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) for v in b)
                and 0 <= b[0] <= b[2] <= S and 0 <= b[1] <= b[3] <= S for b in boxes)):
            raise BadRequest(f"boxes must be a list of [x0, y0, x1, y1] integer boxes inside 0..{S}")
        if s.portrait is None:
            raise BadRequest("push before use_reference")
        return s, crop, boxes

    def _tick(self, tick: Dict[int, Tuple[Connection, dict, bytearray]]):
        e = self.e
        live: Dict[int, Tuple[Connection, dict, Stream]] = {}
        io0 = (e.io.h2d, e.io.d2h)
        for sid, (conn, h, p) in tick.items():
            try:
                s, crop, boxes = self._parse_push(conn, h, p)
                drive = e.pixels_in(crop)
                local = torch.full_like(drive, -1.0)
                for x0, y0, x1, y1 in boxes:
                    local[:, y0:y1, x0:x1] = drive[:, y0:y1, x0:x1]
                s.begin(drive, local)
                live[sid] = (conn, h, s)
            except BadRequest as err:
                conn.error(h.get("id"), err.code, str(err))
        if not live:
            return
        t0 = time.perf_counter()
        try:
            rows = calls = 0
            for j in range(max(s.phases() for _, _, s in live.values())):
                # one call for every stream's rows; a warm-up window (several frames of one row
                # attending to each other) runs in a call of its own
                streaming = [s for _, _, s in live.values() if not s.warming_up]
                windows = [[s] for _, _, s in live.values() if s.warming_up]
                for group in [streaming] + windows:
                    per = [(s, s.items(j)) for s in group]
                    items = [it for _, its in per for it in its]
                    if not items:
                        continue
                    eps = e.run(items)
                    rows += len(items)
                    calls += 1
                    off = 0
                    for s, its in per:
                        if its:
                            s.complete(list(eps[off:off + len(its)]))
                        off += len(its)
            done = [(sid, s) for sid, (_, _, s) in live.items() if s.finished is not None]
            images = {}
            for dec in ("taesd", "vae"):
                grp = [(sid, s) for sid, s in done if s.o.decoder == dec]
                if grp:
                    out = e.decode(torch.stack([s.finished[1] for _, s in grp]), dec)
                    for (sid, _), img in zip(grp, out):
                        images[sid] = img
            e.sync()
        except Exception as err:  # noqa: BLE001 — a failed call costs its streams this frame
            self.stats["failed_ticks"] += 1
            self.log(f"tick failed: {type(err).__name__}: {err}")
            for conn, h, s in live.values():
                s.reset()
                conn.error(h.get("id"), "internal", f"frame failed ({type(err).__name__}: {err}); stream restarted")
            return
        ms = (time.perf_counter() - t0) * 1000
        self.stats["ticks"] += 1
        self.stats["rows"] += rows
        self.stats["frames"] += len(live)
        other = ((e.io.h2d - io0[0]) + (e.io.d2h - io0[1])) / len(live)
        for sid, (conn, h, s) in live.items():
            payload = b""
            frame = None
            if sid in images:
                frame = s.finished[0]
                img = images[sid]
                if s.o.output == "u8":
                    u8 = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous()
                    payload = e.download(u8, frame=True).tobytes()
                else:
                    payload = e.download(img, frame=True).astype(np.float32).tobytes()
            conn.reply(h.get("id"), payload, frame=frame, tick_ms=ms, batch_streams=len(live), batch_rows=rows,
                       batch_calls=calls, other_bytes=other)

    def warm(self):
        """One portrait and one frame through every stage before the worker says it is ready: the
        first use of each kernel (cuDNN / cuBLAS set-up, lazy loading) must not look like a hang."""
        e = self.e
        S = e.image_size
        s = Stream(e, StreamOptions(steps=1, decoder="taesd" if e.taesd is not None else "vae"))
        try:
            img = e.pixels_in(np.zeros((S, S, 3), dtype=np.uint8))
            latent = e.encode(img)
            s.use(Portrait(latent, e.reference(latent, s.timesteps), s.timesteps))
            s.begin(img, img)
            s.complete(list(e.run(s.items(0))))
            e.decode(s.finished[1][None], s.o.decoder)
            e.sync()
        finally:
            s.close()
            e.io = type(e.io)()
            e.seen.clear()

    # ------------------------------------------------------------------------------ reports

    def info(self) -> dict:
        e = self.e
        return {"image_size": e.image_size, "latent_size": e.latent_size, "device": str(e.device),
                "dtype": str(e.dtype).replace("torch.", ""), "sink": e.sink, "ring": e.ring,
                "torch": torch.__version__, "fused_attention": e.fused, "cuda_graphs": e.graphs is not None,
                "taesd": e.taesd is not None, "source": e.source, "row_bytes": e.row_bytes(),
                "device_name": torch.cuda.get_device_name(e.device) if e.device.type == "cuda" else "cpu"}

    def status(self) -> dict:
        e = self.e
        mem = torch.cuda.memory_allocated(e.device) if e.device.type == "cuda" else 0
        peak = torch.cuda.max_memory_allocated(e.device) if e.device.type == "cuda" else 0
        return {**self.stats, "streams": len(self.streams), "rows_in_use": e.rows_in_use(), "capacity": e.capacity,
                "calls": e.io.calls, "rows_run": e.io.rows, "h2d": e.io.h2d, "d2h": e.io.d2h,
                "frame_h2d": e.io.frame_h2d, "frame_d2h": e.io.frame_d2h, "device_bytes": mem, "device_peak_bytes": peak,
                "ms": dict(e.io.ms), "profile": e.profile,
                "graphs": len(e.graphs.cache) if e.graphs is not None else 0}
