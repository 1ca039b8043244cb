"""The torch engine's model: `tiny` (the tiny test model, the same weights as the tiny pack of the
same seed), `random` (the full-size architecture with seeded random weights) or a published
checkpoint file (+ optional LCM-LoRA, the empty-prompt context, optional TAESD weights).

`tiny` and `random` follow export.py's recipe exactly (model from `build_model(cfg, seed)`, context
from seed + 7, TAESD from seed + 11), so the torch engine and a pack exported with the same seed
hold the same weights — the engine-equality tests depend on it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..config import ModelCfg, full_config, tiny_config
from ..export import build_model, load_context, load_taesd
from ..nn import TAESDDecoder, XPortrait


class WeightsError(ValueError):
    """A weights/LoRA/context/TAESD problem, with a message for the user."""


@dataclass
class LoadedModel:
    model: XPortrait
    context: torch.Tensor          # [1, tokens, dim], fp32, CPU
    taesd: Optional[TAESDDecoder]
    cfg: ModelCfg
    source: dict                   # what was loaded, for the engine's `hello`


def _device_ctx(device: str):
    """Build on the target device where torch supports it (≥ 2.0): random init of ~2.9 B
    parameters on a GPU takes seconds, on the CPU about a minute."""
    if device.startswith("cuda") and hasattr(torch, "device") and hasattr(torch.device, "__enter__"):
        return torch.device(device)
    return None


def load_model(weights: str, *, seed: int = 1, image_size: int = 512, lora: Optional[str] = None,
               lora_scale: float = 1.0, context: Optional[str] = None, taesd: Optional[str] = None,
               device: str = "cpu", log: Callable[[str], None] = lambda m: None) -> LoadedModel:
    t0 = time.time()
    if weights == "tiny":
        if lora:
            raise WeightsError("--lcm-lora needs a checkpoint (--weights FILE), not the tiny test model")
        cfg = tiny_config()
        model = build_model(cfg, seed)
        ctx = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim, generator=torch.Generator().manual_seed(seed + 7))
        torch.manual_seed(seed + 11)
        return LoadedModel(model, ctx, TAESDDecoder(cfg.taesd).eval(), cfg, {"weights": "tiny", "seed": seed})
    if weights == "random":
        if lora:
            raise WeightsError("--lcm-lora needs a checkpoint (--weights FILE); fusing it into random weights is meaningless")
        cfg = full_config(image_size)
        dc = _device_ctx(device)
        log(f"building the full-size model with random weights (seed {seed}, on {device if dc else 'cpu'})")
        if dc is not None:
            with dc:
                model = build_model(cfg, seed)
        else:
            model = build_model(cfg, seed)
        ctx = torch.randn(1, cfg.context_tokens, cfg.unet.context_dim, generator=torch.Generator().manual_seed(seed + 7))
        torch.manual_seed(seed + 11)
        taesd_m = TAESDDecoder(cfg.taesd).eval()
        log(f"  built in {time.time() - t0:.1f} s")
        return LoadedModel(model, ctx, taesd_m, cfg, {"weights": "random", "seed": seed, "random_weights": True})
    return _from_file(weights, image_size, lora, lora_scale, context, taesd, log)


def _from_file(path, image_size, lora, lora_scale, context, taesd, log) -> LoadedModel:
    from ..checkpoint import CheckpointError, load_checkpoint, read_state_dict
    if not os.path.isfile(path):
        raise WeightsError(f"--weights {path}: no such file (give a checkpoint .th/.pth/.safetensors, 'random' or 'tiny')")
    if not context:
        raise WeightsError("--weights FILE needs --lcm-context FILE: the CLIP ViT-L/14 embedding of the empty "
                           "prompt, [77, 768] (.npy/.safetensors/.pt; see docs/MODELS.md)")
    cfg = full_config(image_size)
    model = XPortrait(cfg).eval()
    log(f"reading {path}")
    try:
        load_checkpoint(model, read_state_dict(path), log=log)
    except CheckpointError as e:
        raise WeightsError(str(e)) from e
    source = {"weights": os.path.basename(path)}
    if lora:
        from ..lora import fuse_lora, parse_lora
        from ..safetensors import load_file
        if not os.path.isfile(lora):
            raise WeightsError(f"--lcm-lora {lora}: no such file")
        groups, rep = parse_lora(load_file(lora), cfg.unet)
        n = fuse_lora(model.unet, groups, lora_scale)
        log(f"fused the LoRA into {n} UNet weights ({rep['unmatched']} entries unmatched)")
        source["lcm_lora"] = {"file": os.path.basename(lora), "fused": n, "unmatched": rep["unmatched"]}
    try:
        ctx = load_context(context, cfg)
        taesd_m = load_taesd(taesd, cfg) if taesd else None
    except SystemExit as e:            # the exporter's loaders report with SystemExit(message)
        raise WeightsError(str(e)) from e
    return LoadedModel(model, ctx, taesd_m, cfg, source)
