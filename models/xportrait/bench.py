"""Streaming X-Portrait benchmark (PyTorch, random weights).

  /usr/bin/python3 -m models.xportrait.bench            full SD1.5 size, 512², fp16 on CUDA
  /usr/bin/python3 -m models.xportrait.bench --tiny     tiny model on CPU (smoke figure only)

Per frame it runs what the runtime runs: for each LCM step the control stage (pose + local
ControlNets) and the denoise stage (UNet + motion modules with the rolling cache, reference K/V
precomputed), then one decode (VAE or TAESD). The reference stage runs once per portrait and per
step timestep and is reported separately.

stream batch off: the steps of one frame run one after another at batch 1.
stream batch on : StreamDiffusion-style pipelining: one call at batch = steps holds frame t at
                  step 0, frame t-1 at step 1, ...; each call finishes one frame (latency is
                  `steps` calls, throughput one call per frame).
Prints a Markdown table: ms/frame (mean, p50, p90), frames/s, peak memory.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from .config import full_config, tiny_config
from .nn import XPortrait, TAESDDecoder
from .stages import (ControlStage, DenoiseStage, ReferenceStage, TaesdDecodeStage, VaeDecodeStage,
                     geometry, lcm_schedule)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m models.xportrait.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke figure)")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    ap.add_argument("--fp32", action="store_true", help="fp32 instead of fp16 on CUDA")
    ap.add_argument("--steps", default="1,2,4")
    ap.add_argument("--frames", type=int, default=None, help="timed frames per configuration")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sink", type=int, default=1)
    ap.add_argument("--ring", type=int, default=3)
    ap.add_argument("--decoder", choices=["vae", "taesd"], default="taesd")
    ap.add_argument("--image-size", type=int, default=512)
    a = ap.parse_args(argv)

    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if not a.tiny and not dev.startswith("cuda"):
        print("error: the full-size benchmark (SD1.5 UNet + ReferenceNet + 2 ControlNets + motion modules, "
              "~2.9 B parameters, 512²) needs a CUDA GPU; on this CPU it would take minutes per frame.\n"
              "Run `python3 -m models.xportrait.bench --tiny` for a CPU smoke figure.", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    dtype = torch.float16 if dev.startswith("cuda") and not a.fp32 else torch.float32
    cfg = tiny_config() if a.tiny else full_config(a.image_size)
    frames = a.frames or (20 if a.tiny else 30)
    t0 = time.time()
    print(f"building {cfg.name} model on {dev} ({dtype})", file=sys.stderr, flush=True)
    model = XPortrait(cfg).eval()
    geom = geometry(model)
    _, ac = lcm_schedule()
    taesd = TAESDDecoder(cfg.taesd).eval()
    ctx = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim)
    model = model.to(dev, dtype)
    taesd = taesd.to(dev, dtype)
    ref = ReferenceStage(model, ctx).to(dev, dtype)
    ctl = ControlStage(model, ctx).to(dev, dtype)
    den = DenoiseStage(model, ctx, geom, a.sink, a.ring, ac).to(dev, dtype)
    dec = (TaesdDecodeStage(taesd) if a.decoder == "taesd" else VaeDecodeStage(model)).to(dev, dtype)
    print(f"  ready in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)

    L, H, W = cfg.latent_size, cfg.image_size, a.sink + a.ring
    F = geom["cache_frame"][1]
    cuda = dev.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def rnd(*s):
        return torch.randn(*s, device=dev, dtype=dtype)

    rows = []
    for steps in [int(s) for s in a.steps.split(",")]:
        ts_list = [999, 759, 519, 279, 159, 79, 39, 19][:steps] if steps <= 8 else None
        ts_list = {1: [999], 2: [999, 499], 4: [999, 759, 519, 279]}.get(steps, ts_list)
        # reference K/V once per step timestep
        sync()
        tr = time.time()
        refkv = torch.cat([ref(rnd(1, 4, L, L), torch.tensor([t], device=dev)) for t in ts_list])
        sync()
        ref_ms = (time.time() - tr) * 1000
        for batch_on in (False, True):
            if batch_on and steps == 1:
                continue
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            B = steps if batch_on else 1
            caches = [torch.zeros(1, W, F, device=dev, dtype=dtype) for _ in range(steps)]
            masks = [torch.zeros(1, W, device=dev, dtype=dtype) for _ in range(steps)]
            drv, loc = rnd(1, 3, H, H), rnd(1, 3, H, H)
            times = []
            for f in range(a.warmup + frames):
                sync()
                t1 = time.time()
                if batch_on:
                    x = rnd(B, 4, L, L)
                    tt = torch.tensor(ts_list, device=dev)
                    cr = ctl(x, tt, drv.expand(B, -1, -1, -1), loc.expand(B, -1, -1, -1))
                    _, d, c, m = den(x, tt, refkv, cr, torch.cat(caches), torch.cat(masks))
                    caches, masks = list(c.split(1)), list(m.split(1))
                    img = dec(d[-1:])
                else:
                    x = rnd(1, 4, L, L)
                    for s in range(steps):
                        tt = torch.tensor([ts_list[s]], device=dev)
                        cr = ctl(x, tt, drv, loc)
                        _, d, caches[s], masks[s] = den(x, tt, refkv[s:s + 1], cr, caches[s], masks[s])
                        x = d
                    img = dec(x)
                sync()
                if f >= a.warmup:
                    times.append((time.time() - t1) * 1000)
            peak = (torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else \
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            q = sorted(times)
            rows.append({"steps": steps, "batch": "on" if batch_on else "off", "mean": statistics.mean(times),
                         "p50": q[len(q) // 2], "p90": q[min(len(q) - 1, int(len(q) * 0.9))],
                         "peak": peak, "ref": ref_ms})
            print(f"  steps {steps} stream-batch {'on' if batch_on else 'off'}: {rows[-1]['mean']:.1f} ms/frame",
                  file=sys.stderr, flush=True)

    dev_name = torch.cuda.get_device_name() if cuda else "CPU"
    mem = "peak GPU MiB (allocated)" if cuda else "peak RSS MiB (process)"
    print(f"\n**X-Portrait streaming bench** — {cfg.name} model, {H}² image / {L}² latent, {dev_name}, "
          f"{str(dtype).replace('torch.', '')}, decoder {a.decoder}, cache sink {a.sink} + ring {a.ring}, "
          f"{frames} timed frames, torch {torch.__version__}\n")
    print(f"| LCM steps | stream batch | ms/frame mean | p50 | p90 | frames/s | {mem} | reference stage ms (all steps) |")
    print("| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['steps']} | {r['batch']} | {r['mean']:.1f} | {r['p50']:.1f} | {r['p90']:.1f} | "
              f"{1000 / r['mean']:.1f} | {r['peak']:.0f} | {r['ref']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
