"""Python-side checks driven by test/xportrait/*.test.ts. Each subcommand prints one JSON object.

  python3 -m models.xportrait.selftest checkpoint DIR   write synthetic tiny checkpoints (good and
                                                        broken) to DIR and try loading them
  python3 -m models.xportrait.selftest lora DIR         LoRA fusion == run-time LoRA (kohya, peft,
                                                        diffusers key styles via safetensors files)
  python3 -m models.xportrait.selftest cache            torch streaming == full causal recompute
  python3 -m models.xportrait.selftest safetensors DIR  reader/writer round trip
  python3 -m models.xportrait.selftest upstream FIXTURE DIR
                                                        our full-size network (meta device) against
                                                        the upstream state-dict list, key for key and
                                                        through the loader (good and broken files in DIR)
"""
from __future__ import annotations

import copy
import json
import os
import sys

import torch

from .checkpoint import (PREFIXES, CheckpointError, ignore_rule, load_checkpoint, meta_parameters,
                         read_state_dict)
from .config import full_config, tiny_config
from .export import build_model
from .lora import apply_lora_runtime, diffusers_to_ldm_map, fuse_lora, parse_lora
from .nn import XPortrait
from .safetensors import load_file, save_file
from .stages import DenoiseStage, ReferenceStage, geometry, lcm_schedule, reference_video_eps


def _quiet(*a, **k):
    pass


def cmd_checkpoint(d):
    os.makedirs(d, exist_ok=True)
    cfg = tiny_config()
    src = build_model(cfg, seed=5)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    # extra keys a real LatentDiffusion checkpoint carries; must be ignored
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    sd["betas"] = torch.zeros(1000)
    sd["alphas_cumprod"] = torch.zeros(1000)
    res = {}
    good = os.path.join(d, "good.th")
    torch.save({"state_dict": sd}, good)
    dst = build_model(cfg, seed=6)
    try:
        info = load_checkpoint(dst, read_state_dict(good), log=_quiet)
        same = all(torch.equal(dst.state_dict()[k], src.state_dict()[k]) for k in src.state_dict())
        res["good"] = {"ok": True, "identical": same, **info, "model_keys": len(src.state_dict())}
    except CheckpointError as e:
        res["good"] = {"ok": False, "error": str(e)}
    # broken variants
    mk = "model.diffusion_model.input_blocks_motion_module.0.0.temporal_transformer.proj_out.weight"
    sk = "pose_control_model.input_hint_block.0.weight"
    broken = dict(sd)
    del broken[mk]
    broken[sk] = torch.zeros(3, 3, 3, 3)
    broken["local_pose_control_model.bogus.weight"] = torch.zeros(1)
    bad = os.path.join(d, "broken.th")
    torch.save(broken, bad)
    try:
        load_checkpoint(build_model(cfg, seed=6), read_state_dict(bad), log=_quiet)
        res["broken"] = {"ok": True}
    except CheckpointError as e:
        res["broken"] = {"ok": False, "error": str(e), "missing_key": mk, "shape_key": sk,
                         "unexpected_key": "local_pose_control_model.bogus.weight"}
    # optional position-code buffers may be absent
    nope = {k: v for k, v in sd.items() if not k.endswith(".pos_encoder.pe")}
    try:
        info = load_checkpoint(build_model(cfg, seed=6), nope, log=_quiet)
        res["no_pe"] = {"ok": True, **info}
    except CheckpointError as e:
        res["no_pe"] = {"ok": False, "error": str(e)}
    res["paths"] = {"good": good, "broken": bad}
    return res


def _random_lora(cfg, style: str, rank=4, seed=0):
    """A LoRA over every UNet layer an LCM-LoRA touches, in the given key style."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(cfg, seed=1)
    mods = dict(model.unet.named_modules())
    out = {}
    for dname, lname in diffusers_to_ldm_map(cfg.unet).items():
        m = mods[lname]
        if not isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        if isinstance(m, torch.nn.Conv2d):
            down = torch.randn(rank, m.in_channels, *m.kernel_size, generator=g) * 0.1
            up = torch.randn(m.out_channels, rank, 1, 1, generator=g) * 0.1
        else:
            down = torch.randn(rank, m.in_features, generator=g) * 0.1
            up = torch.randn(m.out_features, rank, generator=g) * 0.1
        if style == "kohya":
            base = "lora_unet_" + dname.replace(".", "_")
            out[base + ".lora_down.weight"] = down
            out[base + ".lora_up.weight"] = up
            out[base + ".alpha"] = torch.tensor(float(rank) / 2)
        elif style == "peft":
            out[f"unet.{dname}.lora_A.weight"] = down
            out[f"unet.{dname}.lora_B.weight"] = up
        else:  # diffusers
            out[f"unet.{dname}.lora.down.weight"] = down
            out[f"unet.{dname}.lora.up.weight"] = up
    out["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(1, 1)
    return out


def cmd_lora(d):
    os.makedirs(d, exist_ok=True)
    torch.set_grad_enabled(False)
    cfg = tiny_config()
    res = {}
    sched, ac = lcm_schedule()
    L = cfg.latent_size
    g = torch.Generator().manual_seed(3)
    base = build_model(cfg, seed=1)
    geom = geometry(base)
    ctx = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim, generator=g)
    lat = torch.randn(2, 4, L, L, generator=g)
    ts = torch.tensor([999, 259])
    ref_lat = torch.randn(2, 4, L, L, generator=g)
    ctrl = torch.randn(2, geom["ctrl_res"][1], generator=g) * 0.5
    W = 4
    cache = torch.randn(2, W, geom["cache_frame"][1], generator=g)
    mask = torch.ones(2, W)

    def run(model):
        rk = ReferenceStage(model, ctx)(ref_lat, ts)
        eps = DenoiseStage(model, ctx, geom, 1, 3, ac)(lat, ts, rk, ctrl, cache, mask)[0]
        return eps

    y0 = run(base)
    for style in ("kohya", "peft", "diffusers"):
        path = os.path.join(d, f"lora_{style}.safetensors")
        save_file(_random_lora(cfg, style), path, metadata={"style": style})
        groups, rep = parse_lora(load_file(path), cfg.unet)
        fused = copy.deepcopy(base)
        n = fuse_lora(fused.unet, groups, scale=0.7)
        rt = copy.deepcopy(base)
        apply_lora_runtime(rt.unet, groups, scale=0.7)
        yf, yr = run(fused), run(rt)
        res[style] = {"fused": n, "report": rep, "max_abs_fused_vs_runtime": float((yf - yr).abs().max()),
                      "max_abs_effect": float((yf - y0).abs().max()), "max_abs_eps": float(yr.abs().max())}
    res["expected_targets"] = sum(1 for _, l in diffusers_to_ldm_map(cfg.unet).items()
                                  if isinstance(dict(base.unet.named_modules())[l], (torch.nn.Linear, torch.nn.Conv2d)))
    return res


def cmd_cache():
    torch.set_grad_enabled(False)
    cfg = tiny_config()
    model = build_model(cfg, seed=2)
    sched, ac = lcm_schedule()
    geom = geometry(model)
    g = torch.Generator().manual_seed(4)
    ctx = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim, generator=g)
    out = {}
    for sink, ring in ((1, 3), (2, 2), (0, 4)):
        W = sink + ring
        T = W + 6
        L = cfg.latent_size
        lat = torch.randn(T, 4, L, L, generator=g)
        ts = torch.tensor([[999, 759, 519, 279][i % 4] for i in range(T)])
        rk = ReferenceStage(model, ctx)(torch.randn(1, 4, L, L, generator=g), torch.tensor([999]))
        ctrl = torch.randn(T, geom["ctrl_res"][1], generator=g) * 0.5
        den = DenoiseStage(model, ctx, geom, sink, ring, ac)
        cache = torch.zeros(1, W, geom["cache_frame"][1])
        mask = torch.zeros(1, W)
        eps = []
        for t in range(T):
            e, _, cache, mask = den(lat[t:t + 1], ts[t:t + 1], rk, ctrl[t:t + 1], cache, mask)
            eps.append(e)
        s = torch.cat(eps)
        full = reference_video_eps(model, ctx, lat, ts, rk.expand(T, -1), ctrl, geom, sink, ring)
        out[f"s{sink}r{ring}"] = {"frames": T, "max_abs_err": float((s - full).abs().max()),
                                  "max_abs_eps": float(full.abs().max())}
    return out


def cmd_safetensors(d):
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    ts = {"a.weight": torch.randn(3, 5, generator=g), "b": torch.randn(7, generator=g).half(),
          "c": torch.arange(6, dtype=torch.int64).reshape(2, 3), "scalar": torch.tensor(2.5),
          "bf": torch.randn(4, generator=g).to(torch.bfloat16)}
    p = os.path.join(d, "rt.safetensors")
    save_file(ts, p, metadata={"k": "v"})
    back = load_file(p)
    ok = {k: bool(torch.equal(back[k].to(v.dtype if v.dtype != torch.bfloat16 else torch.float32),
                              v if v.dtype != torch.bfloat16 else v.float())) for k, v in ts.items()}
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    return {"equal": ok, "metadata": hdr.get("__metadata__"), "header_len_multiple_of_8": n % 8 == 0}


def _shaped_like(rows, drop=(), reshape=None, extra=()):
    """A checkpoint with the given names, shapes and dtypes whose tensors are all expanded views of
    one zero per dtype: torch.save writes a few bytes per key instead of 12 GB."""
    zero = {}
    sd = {}
    for key, shape, dtype, _kind in rows:
        if key in drop:
            continue
        dt = getattr(torch, dtype)
        zero.setdefault(dt, torch.zeros(1, dtype=dt).view(()))
        sd[key] = zero[dt].expand(torch.Size(reshape.get(key, shape) if reshape else shape))
    for key in extra:
        sd[key] = torch.zeros(1)
    return {"state_dict": sd}


def cmd_upstream(fixture, d):
    os.makedirs(d, exist_ok=True)
    with open(fixture) as f:
        fx = json.load(f)
    rows = fx["keys"]
    up = {k: (list(s), dt) for k, s, dt, _ in rows}
    with meta_parameters():
        model = XPortrait(full_config())
    own = {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()}
    consumed = sorted(k for k in up if k.startswith(PREFIXES))
    ignored = {}
    for k in up:
        if not k.startswith(PREFIXES) and ignore_rule(k):
            ignored.setdefault(ignore_rule(k), []).append(k)
    res = {
        "provenance": fx["provenance"],
        "fixture_keys": len(up), "model_keys": len(own), "consumed": len(consumed), "ignored": ignored,
        "uncovered": sorted(k for k in up if not k.startswith(PREFIXES) and not ignore_rule(k)),
        "model_not_upstream": sorted(k for k in own if k not in up),
        "upstream_not_model": sorted(k for k in consumed if k not in own),
        "different": sorted(f"{k}: upstream {up[k]} vs model {own[k]}" for k in own if k in up and up[k] != own[k]),
        "model_parameters": sum(p.numel() for p in model.parameters()),
    }

    def load(name, ck):
        path = os.path.join(d, name)
        torch.save(ck, path)
        try:
            return {"ok": True, **load_checkpoint(model, read_state_dict(path), log=_quiet),
                    "file_bytes": os.path.getsize(path)}
        except CheckpointError as e:
            return {"ok": False, "error": str(e)}

    shape_key = "model.diffusion_model.output_blocks_motion_module.11.0.temporal_transformer.proj_in.weight"
    missing_key = "pose_control_model.zero_convs.3.0.weight"
    unknown_key = "model_ema.decay"
    res["load"] = load("upstream-shaped.th", _shaped_like(rows))
    res["wrong_shape"] = {"key": shape_key, "shape": [320, 321], "model_shape": own[shape_key][0],
                          **load("wrong-shape.th", _shaped_like(rows, reshape={shape_key: [320, 321]}))}
    res["missing"] = {"key": missing_key, **load("missing.th", _shaped_like(rows, drop={missing_key}))}
    res["unknown"] = {"key": unknown_key, **load("unknown.th", _shaped_like(rows, extra=[unknown_key]))}
    return res


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    c = argv[0]
    if c == "checkpoint":
        r = cmd_checkpoint(argv[1])
    elif c == "lora":
        r = cmd_lora(argv[1])
    elif c == "cache":
        r = cmd_cache()
    elif c == "safetensors":
        r = cmd_safetensors(argv[1])
    elif c == "upstream":
        r = cmd_upstream(argv[1], argv[2])
    else:
        print(f"unknown subcommand {c}", file=sys.stderr)
        return 2
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
