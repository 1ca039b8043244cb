"""Build an X-Portrait streaming model pack (ONNX stages + manifest.json).

  /usr/bin/python3 -m models.xportrait.export --checkpoint model_state-XXXX.th \
      --lcm-lora pytorch_lora_weights.safetensors --context empty_prompt.npy \
      [--taesd taesd_decoder.pth] --out packs/xportrait-lcm
  /usr/bin/python3 -m models.xportrait.export --tiny --seed 1 --out packs/tiny [--test-vectors]
  /usr/bin/python3 -m models.xportrait.export --random --seed 1 [--image-size 512] --out packs/sd15-random

--random: the full SD1.5-size architecture with random (seeded) weights, random context and random
TAESD decoder, for benchmarking without the checkpoint; outputs are meaningless. The manifest says
so in provenance (random_weights: true, inputs.random_seed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Dict, List

import torch

from .config import ModelCfg, full_config, tiny_config
from .nn import XPortrait, TAESDDecoder
from .stages import (MAX_WINDOW, TIMESTEP_RULES, ControlStage, DenoiseStage, DenoiseWindowStage, ReferenceStage,
                     TaesdDecodeStage, VaeDecodeStage, VaeEncodeStage, geometry, lcm_schedule, reference_video_eps)

EXPORTER_VERSION = "xportrait-export 0.1.0"
OPSET = 17
_T0 = time.time()


def log(msg: str):
    print(f"[{time.time() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- model building

def build_model(cfg: ModelCfg, seed: int) -> XPortrait:
    torch.manual_seed(seed)
    m = XPortrait(cfg)
    if cfg.name == "tiny":
        # random weights everywhere (no zero-init), small enough to keep activations O(1)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if p.ndim >= 2:
                    p.mul_(0.8)
    return m.eval()


def load_context(path: str, cfg: ModelCfg) -> torch.Tensor:
    if path.endswith(".npy"):
        import numpy as np
        t = torch.from_numpy(np.load(path)).float()
    elif path.endswith(".safetensors"):
        from .safetensors import load_file
        d = load_file(path)
        t = next(iter(d.values())).float()
    else:
        t = torch.load(path, map_location="cpu").float()
    t = t.reshape(-1, t.shape[-1])
    if t.shape != (cfg.context_tokens, cfg.unet.context_dim):
        raise SystemExit(f"--context: expected [{cfg.context_tokens}, {cfg.unet.context_dim}] "
                         f"(CLIP ViT-L/14 last hidden state of the empty prompt), got {list(t.shape)}")
    return t[None]


def load_taesd(path: str, cfg: ModelCfg) -> TAESDDecoder:
    if path.endswith(".safetensors"):
        from .safetensors import load_file
        sd = load_file(path)
    else:
        sd = torch.load(path, map_location="cpu")
    sd = {k.replace("decoder.layers.", "").replace("decoder.", ""): v for k, v in sd.items()
          if not k.startswith("encoder.")}
    t = TAESDDecoder(cfg.taesd)
    own = t.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise SystemExit(f"--taesd {path}: {len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected "
                         f"{unexpected[:8]}, {len(bad)} wrong shape {bad[:8]}")
    t.load_state_dict(sd)
    return t.eval()


# the XPortrait sub-networks each stage's graph uses
STAGE_PARTS = {
    "reference": ("appearance_control_model", "model"),    # + the main UNet's attn1 to_k / to_v
    "control": ("pose_control_model", "local_pose_control_model"),
    "denoise": ("model",),
    "denoise_window": ("model",),
    "vae_encode": ("first_stage_model",),
    "vae_decode": ("first_stage_model",),
    "taesd_decode": (),
}


# full size: export order that frees the most memory first (the manifest keeps the asked order)
EXPORT_ORDER = ("control", "reference", "denoise", "denoise_window", "vae_encode", "vae_decode", "taesd_decode")


class _Attn1Only:
    def __init__(self, attn1):
        self.attn1 = attn1


class _UNetAttn1View:
    def __init__(self, attn1s):
        self._attn1s = attn1s

    def transformer_blocks(self):
        return [_Attn1Only(a) for a in self._attn1s]


class StageView(torch.nn.Module):
    """The sub-networks of XPortrait that one stage's graph uses. torch.onnx.export copies the
    traced module's whole state (used or not) and needs about two more copies of the weights it
    writes, so tracing a stage over the full model (11.5 GB) does not fit in 24 GB."""

    def __init__(self, model: XPortrait, stage: str):
        super().__init__()
        self.cfg = model.cfg
        if stage == "reference":          # ReferenceNet + the main UNet's attn1 (to_k / to_v only)
            self.appearance_control_model = model.appearance_control_model
            self.ref_attn1 = torch.nn.ModuleList([b.attn1 for b in model.unet.transformer_blocks()])
        else:
            for part in STAGE_PARTS[stage]:
                setattr(self, part, getattr(model, part))

    @property
    def unet(self):
        if "model" in self._modules:
            return self.model.diffusion_model
        return _UNetAttn1View(list(self.ref_attn1))


def release_unused(model: XPortrait, stages_left: List[str]):
    """Drop the sub-networks that no stage still to export uses (the full model is ~2.9 B
    parameters, 11.5 GB in fp32; exporting a stage needs some GB more on top)."""
    keep = {p for s in stages_left for p in STAGE_PARTS.get(s, ())}
    for part in ("appearance_control_model", "pose_control_model", "local_pose_control_model",
                 "model", "first_stage_model"):
        if part not in keep and part in model._modules:
            n = sum(p.numel() for p in getattr(model, part).parameters())
            delattr(model, part)
            log(f"  released {part} ({n / 1e6:.0f} M parameters)")


# ----------------------------------------------------------------------------- ONNX export

EXTERNAL_DATA_THRESHOLD = int(os.environ.get("XPL_EXTERNAL_DATA_THRESHOLD", 1_800_000_000))


def save_onnx(model, path):
    """Single file below the threshold, else weights in one PATH.data file next to it."""
    import onnx
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > EXTERNAL_DATA_THRESHOLD:
        data = os.path.basename(path) + ".data"
        if os.path.exists(os.path.join(os.path.dirname(path), data)):
            os.remove(os.path.join(os.path.dirname(path), data))
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
    else:
        onnx.save(model, path)


def _collect_external(tmp: str, tmp_dir: str, path: str):
    """Graph that torch wrote with one external file per tensor (over 2 GB) -> PATH + PATH.data
    (the layout save_onnx writes), streaming tensor by tensor instead of loading all weights.
    Returns the graph without its weights (enough for the I/O description)."""
    import onnx
    from onnx import TensorProto
    model = onnx.load(tmp, load_external_data=False)
    data = os.path.basename(path) + ".data"
    with open(os.path.join(os.path.dirname(path), data), "wb") as out:
        for t in model.graph.initializer:
            if t.data_location != TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in t.external_data}
            with open(os.path.join(tmp_dir, info["location"]), "rb") as f:
                f.seek(int(info.get("offset", 0)))
                raw = f.read(int(info["length"])) if "length" in info else f.read()
            offset = out.tell()
            out.write(raw)
            del t.external_data[:]
            for k, v in (("location", data), ("offset", str(offset)), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            del raw
    onnx.save(model, path)
    return model


def _export(module, args, path, in_names, out_names, dyn: Dict[str, Dict[int, str]]):
    import onnx
    from onnx import TensorProto
    tmp_dir = path + ".tmp"
    os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir, "graph.onnx")
    # models over 2 GB are written by torch with one external file per tensor: collect them
    torch.onnx.export(module, args, tmp, opset_version=OPSET, input_names=in_names,
                      output_names=out_names, dynamic_axes=dyn, do_constant_folding=True)
    model = onnx.load(tmp, load_external_data=False)
    if any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer):
        model = _collect_external(tmp, tmp_dir, path)
    else:
        save_onnx(model, path)
    for f in os.listdir(tmp_dir):
        os.remove(os.path.join(tmp_dir, f))
    os.rmdir(tmp_dir)
    return model


def _io(model, sym_batch="batch"):
    import onnx
    from onnx import TensorProto

    def one(v):
        tt = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
        return {"name": v.name, "dtype": {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16",
                                          TensorProto.INT64: "int64"}[tt.elem_type], "shape": dims}
    return [one(v) for v in model.graph.input], [one(v) for v in model.graph.output]


def sample_inputs(cfg: ModelCfg, geom, sink, ring, B=2, seed=123):
    g = torch.Generator().manual_seed(seed)
    L, H = cfg.latent_size, cfg.image_size
    W = sink + ring
    mask = torch.zeros(B, W)
    mask[0, -2:] = 1.0           # item 0 warming up, item 1+ full
    mask[1:] = 1.0
    return {
        "ref_latent": torch.randn(B, 4, L, L, generator=g),
        "latent": torch.randn(B, 4, L, L, generator=g),
        "timestep": torch.tensor([999, 259][:B] + [500] * max(0, B - 2), dtype=torch.long),
        "driving": torch.rand(B, 3, H, H, generator=g) * 2 - 1,
        "local": torch.rand(B, 3, H, H, generator=g) * 2 - 1,
        "ref_kv": torch.randn(B, geom["ref_kv"][1], generator=g),
        "ctrl_res": torch.randn(B, geom["ctrl_res"][1], generator=g) * 0.5,
        "cache_in": torch.randn(B, W, geom["cache_frame"][1], generator=g),
        "cache_mask": mask,
        "uncond": torch.tensor([0.0, 1.0][:B] + [0.0] * max(0, B - 2)),   # item 1: a CFG unconditional item
        "image": torch.rand(B, 3, H, H, generator=g) * 2 - 1,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m models.xportrait.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="published X-Portrait model_state-*.th (or .safetensors)")
    ap.add_argument("--lcm-lora", help="SD1.5 LCM-LoRA safetensors (kohya / diffusers / peft keys)")
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--context", help="empty-prompt CLIP embedding [77,768] (.npy/.safetensors/.pt); "
                                      "baked into the graphs")
    ap.add_argument("--taesd", help="TAESD decoder weights (taesd_decoder.pth or .safetensors)")
    ap.add_argument("--tiny", action="store_true", help="random tiny model (tests)")
    ap.add_argument("--random", action="store_true",
                    help="full-size model (--image-size) with random weights from --seed, random context and "
                         "random TAESD (benchmark pack without the checkpoint; outputs are meaningless)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sink", type=int, default=None, help="temporal sink frames (default 1)")
    ap.add_argument("--ring", type=int, default=None, help="temporal ring frames (default 3)")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--timestep-rule", choices=TIMESTEP_RULES, default="skip-step",
                    help="LCM timesteps: skip-step (the LCM paper's rule) or linspace (diffusers' current rule); "
                         "named in the manifest, the runtime may override it")
    ap.add_argument("--no-fp16", action="store_true", help="skip the fp16 graphs")
    ap.add_argument("--warmup", type=int, default=0,
                    help="also export `denoise_window` for a bidirectional warm-up window of this many frames "
                         "(2..sink+ring+1; the runtime's --lcm-warmup must match); 0 = none")
    ap.add_argument("--stages", default="reference,control,denoise,vae_encode,vae_decode,taesd_decode")
    ap.add_argument("--test-vectors", action="store_true",
                    help="also write torch reference inputs/outputs under OUT/testvectors (tiny)")
    a = ap.parse_args(argv)

    if a.random and a.tiny:
        ap.error("--random (full-size random weights) and --tiny (tiny random model) exclude each other")
    if a.random and a.checkpoint:
        ap.error("--random builds random weights; it cannot be combined with --checkpoint")
    if a.random and a.lcm_lora:
        ap.error("--lcm-lora needs --checkpoint; fusing it into random weights (--random) is meaningless")
    if not a.tiny and not a.checkpoint and not a.random:
        ap.error("give --checkpoint (real pack) or --tiny (random test pack), or --random "
                 "(full-size random-weight pack)")
    sink = a.sink if a.sink is not None else 1
    ring = a.ring if a.ring is not None else 3
    if sink < 0 or ring < 1:
        ap.error("--sink must be >= 0 and --ring >= 1")
    cfg = tiny_config() if a.tiny else full_config(a.image_size)
    if a.warmup and not 2 <= a.warmup <= sink + ring + 1:
        ap.error(f"--warmup must be 0 or 2..{sink + ring + 1} (sink + ring + 1 frames)")
    if sink + ring + 1 > MAX_WINDOW:
        ap.error(f"sink + ring + 1 must be <= {MAX_WINDOW}: the motion modules were trained on {MAX_WINDOW}-frame "
                 f"windows (their position codes go to {cfg.motion.pe_max_len}, but positions past {MAX_WINDOW} are untrained)")
    os.makedirs(a.out, exist_ok=True)
    torch.set_grad_enabled(False)
    provenance = {"exporter_version": EXPORTER_VERSION, "torch": torch.__version__, "opset": OPSET,
                  "inputs": {}}

    log(f"building {cfg.name} model")
    model = build_model(cfg, a.seed)
    if a.checkpoint:
        from .checkpoint import load_checkpoint, read_state_dict, sha256_file, CheckpointError
        log(f"hashing {a.checkpoint}")
        provenance["inputs"]["checkpoint"] = {"file": os.path.basename(a.checkpoint), "sha256": sha256_file(a.checkpoint)}
        log("reading checkpoint")
        sd = read_state_dict(a.checkpoint)
        try:
            load_checkpoint(model, sd, log=log)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        del sd
    else:
        provenance["inputs"]["random_seed"] = a.seed
        if a.random:
            provenance["random_weights"] = True
            provenance["note"] = ("full-size architecture with random weights (exporter --random): "
                                  "for benchmarking only, outputs are meaningless")
    if a.lcm_lora:
        from .checkpoint import sha256_file
        from .lora import fuse_lora, parse_lora
        from .safetensors import load_file
        provenance["inputs"]["lcm_lora"] = {"file": os.path.basename(a.lcm_lora), "sha256": sha256_file(a.lcm_lora),
                                            "scale": a.lora_scale}
        groups, rep = parse_lora(load_file(a.lcm_lora), cfg.unet)
        n = fuse_lora(model.unet, groups, a.lora_scale)
        provenance["inputs"]["lcm_lora"].update(rep)
        log(f"fused LoRA into {n} UNet weights ({rep['skipped_text_encoder']} text-encoder and "
            f"{rep['unmatched']} unmatched entries skipped)")
        if rep["unmatched"]:
            log(f"  unmatched examples: {rep['unmatched_examples']}")
    if a.context:
        from .checkpoint import sha256_file
        context = load_context(a.context, cfg)
        provenance["inputs"]["context"] = {"file": os.path.basename(a.context), "sha256": sha256_file(a.context)}
    elif a.tiny or a.random:
        context = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim, generator=torch.Generator().manual_seed(a.seed + 7))
    else:
        print("error: a real pack needs --context (the CLIP ViT-L/14 embedding of the empty prompt, "
              "[77, 768]); see docs/MODELS.md", file=sys.stderr)
        return 2
    taesd = None
    if a.taesd:
        from .checkpoint import sha256_file
        taesd = load_taesd(a.taesd, cfg)
        provenance["inputs"]["taesd"] = {"file": os.path.basename(a.taesd), "sha256": sha256_file(a.taesd)}
    elif a.tiny or a.random:
        torch.manual_seed(a.seed + 11)
        taesd = TAESDDecoder(cfg.taesd).eval()

    sched, ac = lcm_schedule(rule=a.timestep_rule)
    geom = geometry(model)
    stages_wanted = list(dict.fromkeys(s for s in a.stages.split(",") if s))
    if taesd is None and "taesd_decode" in stages_wanted:
        stages_wanted.remove("taesd_decode")
    if a.warmup and "denoise" in stages_wanted:
        stages_wanted.insert(stages_wanted.index("denoise") + 1, "denoise_window")
    W = sink + ring
    x = sample_inputs(cfg, geom, sink, ring)
    B = {"batch": "batch"}
    defs = {
        "reference": (ReferenceStage(model, context), ("ref_latent", "timestep"), ("ref_kv",)),
        "control": (ControlStage(model, context), ("latent", "timestep", "driving", "local"), ("ctrl_res",)),
        "denoise": (DenoiseStage(model, context, geom, sink, ring, ac),
                    ("latent", "timestep", "ref_kv", "ctrl_res", "cache_in", "cache_mask", "uncond"),
                    ("eps", "denoised", "cache_out", "cache_mask_out")),
        "vae_encode": (VaeEncodeStage(model), ("image",), ("latent",)),
        "vae_decode": (VaeDecodeStage(model), ("latent",), ("image",)),
    }
    if taesd is not None:
        defs["taesd_decode"] = (TaesdDecodeStage(taesd), ("latent",), ("image",))
    if a.warmup:
        # batch = the window's frames of one stream: a fixed size, so every shape is static
        defs["denoise_window"] = (DenoiseWindowStage(model, context, geom, sink, ring, ac, a.warmup),
                                  ("latent", "timestep", "ref_kv", "ctrl_res"),
                                  ("eps", "denoised", "cache_out", "cache_mask_out"))
        xw = sample_inputs(cfg, geom, sink, ring, B=a.warmup)
    L, H, C = cfg.latent_size, cfg.image_size, cfg.unet.in_channels
    shapes = {n: list(t.shape) for n, t in x.items()}
    shapes.update({"ref_kv": [0, geom["ref_kv"][1]], "ctrl_res": [0, geom["ctrl_res"][1]],
                   "eps": [0, C, L, L], "denoised": [0, C, L, L], "cache_out": [0, W, geom["cache_frame"][1]],
                   "cache_mask_out": [0, W]})
    manifest_stages = {}
    vectors = {}
    for name in stages_wanted:
        if name not in defs:
            ap.error(f"unknown stage {name}")
    n_tblocks = len(model.unet.transformer_blocks())
    # low-memory path (full size; XPL_EXPORT_LOW_MEMORY=1/0 forces it on/off, e.g. to test it on the
    # tiny model): each stage is traced over only the sub-networks it uses, exported in
    # EXPORT_ORDER, and sub-networks are freed once no remaining stage uses them. Same graphs up to
    # the names of internal values; the tiny default path stays byte-stable.
    low_mem = os.environ.get("XPL_EXPORT_LOW_MEMORY")
    release = (cfg.name != "tiny" if low_mem is None else low_mem == "1") and not a.test_vectors
    order = sorted(stages_wanted, key=EXPORT_ORDER.index) if release else list(stages_wanted)
    if release:
        release_unused(model, order)
    for si, name in enumerate(order):
        mod, ins, outs = defs[name]
        mod.eval()
        if release and name in STAGE_PARTS and STAGE_PARTS[name]:
            mod.m = StageView(model, name)
        window = name == "denoise_window"
        args = tuple((xw if window else x)[i] for i in ins)
        path = os.path.join(a.out, f"{name}.onnx")
        log(f"exporting {name} -> {path}")
        dyn = {} if window else {n: {0: "batch"} for n in list(ins) + list(outs)}
        onnx_model = _export(mod, args, path, list(ins), list(outs), dyn)
        i_desc, o_desc = _io(onnx_model)
        if release:                   # before the fp16 conversion, which loads the fp32 weights
            defs[name] = mod = onnx_model = None
            release_unused(model, order[si + 1:])
        for d in i_desc + o_desc:               # concrete sizes for every non-batch dim
            lead = ([1] if d["name"].startswith("cache") else [a.warmup]) if window else ["batch"]
            d["shape"] = lead + list(shapes[d["name"]][1:])
        files = {"fp32": os.path.basename(path)}
        if not a.no_fp16:
            from .fp16 import convert_file
            p16 = os.path.join(a.out, f"{name}.fp16.onnx")
            log(f"  converting {name} to fp16 -> {p16}")
            convert_file(path, p16)
            files["fp16"] = os.path.basename(p16)
        manifest_stages[name] = {"files": files, "inputs": i_desc, "outputs": o_desc}
        if a.test_vectors:
            with torch.no_grad():
                res = mod(*args)
            res = res if isinstance(res, tuple) else (res,)
            vectors[name] = ({n: (xw if window else x)[n] for n in ins}, dict(zip(outs, res)))
    manifest_stages = {n: manifest_stages[n] for n in stages_wanted}

    u = cfg.unet
    manifest = {
        "format": "xportrait-pack",
        "format_version": 1,
        "name": os.path.basename(os.path.abspath(a.out)),
        "model": cfg.name,
        "geometry": {
            "image_size": cfg.image_size, "latent_size": cfg.latent_size, "latent_channels": u.in_channels,
            "vae_scale_factor": cfg.vae.scale_factor, "context_tokens": cfg.context_tokens,
            "context_dim": u.context_dim, "model_channels": u.model_channels,
            "channel_mult": list(u.channel_mult), "num_res_blocks": u.num_res_blocks,
            "transformer_blocks": n_tblocks,
        },
        "stages": manifest_stages,
        "precisions": {"fp32": "as listed", "fp16": "every float32 input/output is float16; int64 unchanged; "
                       "normalisations and the timestep path run in float32 inside the graph"},
        "scheduler": sched,
        "temporal_cache": {
            "sink_frames": sink, "ring_frames": ring, "slots": W,
            "frame_payload": geom["cache_frame"][1],
            "num_modules": len(geom["motion_modules"]),
            "modules": geom["motion_modules"],
            "positions": "fixed-slot: slot s uses position code s, current frame uses W; warm-up fills "
                         "the rightmost slots; once slot 0 is filled the first `sink` slots are frozen "
                         "and the ring shifts (oldest dropped)",
            "max_window": MAX_WINDOW,
            "window_frames": a.warmup if "denoise_window" in manifest_stages else 0,
            "per_step": True,
            "bytes_per_step_fp32": W * geom["cache_frame"][1] * 4,
        },
        "layouts": {"ref_kv": geom["ref_kv"][0], "ctrl_res": geom["ctrl_res"][0],
                    "cache_frame": geom["cache_frame"][0]},
        "provenance": provenance,
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"wrote {os.path.join(a.out, 'manifest.json')}")
    if a.test_vectors:
        write_vectors(a.out, vectors, model, context, geom, sink, ring, cfg, ac)
    log("done")
    return 0


# ----------------------------------------------------------------------------- test vectors

def _save(d, name, t: torch.Tensor):
    t = t.detach().contiguous()
    dt = {torch.float32: "float32", torch.int64: "int64"}[t.dtype]
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(t.numpy().tobytes())
    return {"file": name + ".bin", "dtype": dt, "shape": list(t.shape)}


def write_vectors(out, vectors, model, context, geom, sink, ring, cfg, ac):
    d = os.path.join(out, "testvectors")
    os.makedirs(d, exist_ok=True)
    index = {"stages": {}}
    for stage, (ins, outs) in vectors.items():
        index["stages"][stage] = {
            "inputs": {n: _save(d, f"{stage}.in.{n}", t) for n, t in ins.items()},
            "outputs": {n: _save(d, f"{stage}.out.{n}", t) for n, t in outs.items()},
        }
    # streaming sequence: T frames of one stream through the cached denoise stage must equal the
    # full causal recompute (no cache) over the same window
    T = sink + ring + 5
    g = torch.Generator().manual_seed(99)
    L = cfg.latent_size
    lat = torch.randn(T, 4, L, L, generator=g)
    ts = torch.tensor([[999, 759, 519, 279][i % 4] for i in range(T)], dtype=torch.long)
    ref_kv = ReferenceStage(model, context)(torch.randn(1, 4, L, L, generator=g), torch.tensor([999]))
    ctrl = torch.randn(T, geom["ctrl_res"][1], generator=g) * 0.5
    with torch.no_grad():
        full = reference_video_eps(model, context, lat, ts, ref_kv.expand(T, -1), ctrl, geom, sink, ring)
    index["stream"] = {
        "frames": T, "sink": sink, "ring": ring,
        "latent": _save(d, "stream.latent", lat), "timestep": _save(d, "stream.timestep", ts),
        "ref_kv": _save(d, "stream.ref_kv", ref_kv), "ctrl_res": _save(d, "stream.ctrl_res", ctrl),
        "eps_full_recompute": _save(d, "stream.eps_full", full),
    }
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    log(f"wrote test vectors to {d}")


if __name__ == "__main__":
    sys.exit(main())
