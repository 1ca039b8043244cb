"""The torch engine's device check: the full-size model with random weights at 512², fp16, in the
worker process, measured through its own protocol by a Python client — no Node needed.

  python3 -m models.xportrait.engine.gpucheck                 one GPU: writes docs/BENCHMARKS.md
  python3 -m models.xportrait.engine.gpucheck --dry-run       the tiny model on the CPU (proves the script)

Prints one Markdown table set: per-stage milliseconds (synchronised, eager), frames/s at 1/2/4 steps
with stream batch off and on (CUDA graphs as served), 1/2/4 sessions batched, device memory, and
host↔device bytes per frame; then writes it as the `gpu-check` section of docs/BENCHMARKS.md.
Every phase checks the time budget and says what it skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

from .client import ROOT, Client, start_worker, stop_worker

T0 = time.time()


def log(msg: str):
    print(f"[gpu-check {time.time() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def crop(S: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, (S, S, 3), dtype=np.uint8).tobytes()


def boxes(S: int):
    e = S // 8
    return [[e, 2 * e, 3 * e, 4 * e], [5 * e, 2 * e, 7 * e, 4 * e], [3 * e, 5 * e, 5 * e, 7 * e]]


class Session:
    def __init__(self, sock: str, S: int, seed: int, **opts):
        self.c = Client(sock)
        self.S = S
        self.id = self.c.open(**opts)
        self.c.use_reference(self.id, self.c.encode_reference(self.id, crop(S, seed)))
        self.frames = [crop(S, seed * 100 + i) for i in range(4)]
        self.i = 0
        self.last = {}

    def push(self):
        h, _ = self.c.push(self.id, self.frames[self.i % 4], boxes(self.S))
        self.i += 1
        self.last = h
        return h

    def close(self):
        self.c.close()


def stats(sock: str) -> dict:
    c = Client(sock)
    try:
        return c.call("stats")[0]["stats"]
    finally:
        c.close()


def run_sessions(sock, S, n, frames, warm, **opts):
    """n sessions pushing together (one thread each): aggregate frames/s, ms per frame of session 0."""
    ss = [Session(sock, S, 10 + k, **opts) for k in range(n)]
    try:
        def rounds(count, times=None):
            for _ in range(count):
                t = time.perf_counter()
                ths = [threading.Thread(target=s.push) for s in ss]
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                if times is not None:
                    times.append((time.perf_counter() - t) * 1000)
        rounds(warm)
        before = stats(sock)
        times = []
        t0 = time.perf_counter()
        rounds(frames, times)
        wall = time.perf_counter() - t0
        after = stats(sock)
        per = n * frames
        return {
            "fps": per / wall, "ms": sorted(times), "rows_per_call": (after["rows_run"] - before["rows_run"]) / max(1, after["calls"] - before["calls"]),
            "calls_per_frame": (after["calls"] - before["calls"]) / frames,
            "h2d_other": (after["h2d"] - before["h2d"]) / per, "d2h_other": (after["d2h"] - before["d2h"]) / per,
            "frame_h2d": (after["frame_h2d"] - before["frame_h2d"]) / per, "frame_d2h": (after["frame_d2h"] - before["frame_d2h"]) / per,
            "peak": after["device_peak_bytes"], "graphs": after["graphs"], "tick": ss[0].last.get("tick_ms", 0.0),
        }
    finally:
        for s in ss:
            s.close()


def profile(sock, S, steps, frames):
    """Per-stage ms per frame (eager, synchronised after each stage), and per portrait."""
    c = Client(sock)
    try:
        c.call("profile", on=True)
        s = Session(sock, S, 3, steps=steps)
        for _ in range(frames):
            s.push()
        ms = stats(sock)["ms"]
        s.close()
    finally:
        c.call("profile", on=False)
        c.close()
    per_frame = {k: v / frames for k, v in ms.items() if k in ("control", "unet", "step", "taesd", "vae")}
    return per_frame, {k: ms[k] for k in ("vae_encode", "reference") if k in ms}


def mib(b):
    return f"{b / 2 ** 20:.1f}"


def write_section(path: str, name: str, title: str, body: str):
    """The same section format as bench/report.ts (markers around one benchmark's Markdown)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pat = re.compile(re.escape(start) + r"[\s\S]*?" + re.escape(end))
    doc = pat.sub(lambda _: section, doc) if pat.search(doc) else doc.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(doc)


def compare(a, sock, args, S, frames, warm, dry) -> int:
    """The torch engine at the WebGPU run's size and steps, next to the given WebGPU figures."""
    import torch
    webgpu = {int(k): float(v) for k, v in (p.split(":") for p in a.compare.split(",") if p)}
    proc = start_worker(sock, args)
    try:
        info = Client(sock).call("hello")[0]["info"]
        rows = [(n, run_sessions(sock, S, 1, frames, warm + n, steps=n)["fps"], fps) for n, fps in sorted(webgpu.items())]
    finally:
        stop_worker(proc)
    dev = "CPU (dry run: tiny model, WebGPU on SwiftShader — no GPU figure)" if dry else info["device_name"]
    body = "\n".join([
        f"Machine: {dev}; torch {torch.__version__}. Date: {time.strftime('%Y-%m-%d')}. Command: `bash scripts/gpu-check.sh{' --dry-run' if dry else ''}`.",
        f"{S}² image, one session, stream batch off, {frames} frames; torch engine: {info['dtype']}, served as in production "
        f"(CUDA graphs {'on' if info['cuda_graphs'] else 'off'}), through its socket; onnx engine: the random-weight pack of the same "
        "architecture on onnxruntime-node's WebGPU EP (`bench:lcm --ep webgpu`, its own section has the details).",
        "",
        "| steps | torch fps | onnx WebGPU fps | torch / WebGPU |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {n} | {t:.1f} | {w:.1f} | {t / w:.1f} |" for n, t, w in rows],
    ])
    print(body)
    if not a.no_write:
        write_section(a.out, "gpu-check-webgpu-dry-run" if dry else "gpu-check-webgpu",
                      f"Torch engine vs onnx engine on WebGPU ({'dry run' if dry else dev}, {S}²)", body)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m models.xportrait.engine.gpucheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny model on the CPU (checks the script, measures nothing useful)")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds this part may take; later phases are skipped past it")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--compare", default=None, metavar="STEPS:FPS,…",
                    help="side-by-side mode: the onnx engine's WebGPU frames/s per step count (from bench:lcm), "
                         "measured here for the torch engine at --image-size; writes the `gpu-check-webgpu` section")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    import torch
    dry = a.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device; use --dry-run on a machine without one", file=sys.stderr)
        return 2
    frames = a.frames or (6 if dry else 40)
    warm = 3
    S = 64 if dry else a.image_size
    sock = os.path.join(tempfile.gettempdir(), f"xpl-gpucheck-{os.getpid()}.sock")
    args = (["--weights", "tiny", "--device", "cpu", "--threads", "1"] if dry else
            ["--weights", "random", "--device", "cuda", "--dtype", "fp16", "--image-size", str(S)]) + ["--batch-wait-ms", "5"]
    if a.compare:
        return compare(a, sock, args, S, frames, warm, dry)
    log(f"starting the worker: {' '.join(args)}")
    t = time.time()
    proc = start_worker(sock, args, log_path=os.path.join(tempfile.gettempdir(), "xpl-gpucheck-worker.log"))
    start_s = time.time() - t
    out, skipped = [], []
    try:
        info = Client(sock).call("hello")[0]["info"]
        log(f"worker ready in {start_s:.1f} s: {json.dumps(info)}")
        dev = info["device_name"]
        stage, portrait = profile(sock, S, 4, 4 if dry else 10)
        log(f"per-stage ms (4 steps): {stage}, per portrait: {portrait}")
        rows = []
        for steps in (1, 2, 4):
            for sb in ((False, True) if steps > 1 else (False,)):
                if time.time() - T0 > a.budget:
                    skipped.append(f"{steps} steps, stream batch {'on' if sb else 'off'}")
                    continue
                r = run_sessions(sock, S, 1, frames, warm + steps, steps=steps, stream_batch=sb)
                rows.append((steps, sb, r))
                log(f"{steps} steps, stream batch {'on' if sb else 'off'}: {r['fps']:.1f} fps")
        sess = []
        for n in (1, 2, 4):
            if time.time() - T0 > a.budget:
                skipped.append(f"{n} sessions")
                continue
            r = run_sessions(sock, S, n, frames, warm + 4, steps=4, stream_batch=True)
            sess.append((n, r))
            log(f"{n} sessions, 4 steps, stream batch: {r['fps']:.1f} fps in all")
        st = stats(sock)
    finally:
        stop_worker(proc)
    gpu = "CPU (dry run: the tiny model; the figures say nothing about a GPU)" if dry else dev
    out += [
        f"Machine: {gpu}; host {platform.node()}, {os.cpu_count()} CPUs; torch {torch.__version__}"
        f"{'' if dry else f', CUDA {torch.version.cuda}'}. Date: {time.strftime('%Y-%m-%d')}. Command: `bash scripts/gpu-check.sh{' --dry-run' if dry else ''}`.",
        f"Model: {'tiny' if dry else 'full X-Portrait architecture (UNet + motion modules, ReferenceNet, 2 ControlNets, VAE, TAESD), random weights'}, "
        f"{S}² image, {info['dtype']}, cache sink {info['sink']} + ring {info['ring']}, TAESD decoder; "
        f"fused attention (SDPA) {'on' if info['fused_attention'] else 'off'}, CUDA graphs {'on' if info['cuda_graphs'] else 'off'}; "
        f"worker start (model build + load) {start_s:.1f} s; {frames} timed frames per row after warm-up (graph capture).",
        "",
        "Per stage, eager and synchronised after each stage (so slower than served; 4 steps): "
        + ", ".join(f"{k} {v:.2f} ms/frame" for k, v in stage.items())
        + "; per portrait: " + ", ".join(f"{k} {v:.1f} ms" for k, v in portrait.items()) + ".",
        "",
        "| steps | stream batch | fps | frame ms p50 / p90 | frame pixels up / down B | other host→device / device→host B per frame | CUDA graphs held |",
        "| ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for steps, sb, r in rows:
        out.append(f"| {steps} | {'on' if sb else 'off'} | {r['fps']:.1f} | {statistics.median(r['ms']):.1f} / {r['ms'][int(len(r['ms']) * 0.9) - 1]:.1f} | "
                   f"{r['frame_h2d']:.0f} / {r['frame_d2h']:.0f} | {r['h2d_other']:.0f} / {r['d2h_other']:.0f} | {r['graphs']} |")
    out += ["", "| sessions (4 steps, stream batch) | fps, all sessions | fps per session | rows per call | calls per frame |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for n, r in sess:
        out.append(f"| {n} | {r['fps']:.1f} | {r['fps'] / n:.1f} | {r['rows_per_call']:.1f} | {r['calls_per_frame']:.1f} |")
    out += ["", f"Device memory: {mib(st['device_bytes'])} MiB allocated at the end, peak {mib(st['device_peak_bytes'])} MiB; "
            f"{info['row_bytes'] / 2 ** 20:.0f} MiB per row (one stream × step: its temporal caches and reference K/V)."
            if not dry else "Device memory: – (CPU).",
            "Frames are measured end to end through the worker's socket (Python client, uint8 RGB frames both ways); "
            "\"other\" bytes are everything besides the frame's pixels that crossed the bus (timesteps, slots, positions, masks)."]
    if skipped:
        out.append(f"Skipped for the time budget ({a.budget:.0f} s): {', '.join(skipped)}.")
    body = "\n".join(out)
    print(body)
    if not a.no_write:
        write_section(a.out, "gpu-check-dry-run" if dry else "gpu-check", f"Torch engine on {'the CPU (gpu-check dry run)' if dry else dev}", body)
        log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
