"""Loading the published X-Portrait checkpoint (model_state-*.th) into XPortrait, strictly."""
from __future__ import annotations

import hashlib
from typing import Dict, List

import torch

from .nn import XPortrait

PREFIXES = ("model.diffusion_model.", "appearance_control_model.", "pose_control_model.",
            "local_pose_control_model.", "first_stage_model.")
# position codes are a deterministic function of the shape; tolerated when absent
OPTIONAL_SUFFIXES = (".pos_encoder.pe",)


class CheckpointError(ValueError):
    pass


def sha256_file(path: str, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from .safetensors import load_file
        return load_file(path)
    obj = torch.load(path, map_location="cpu")
    for k in ("state_dict", "model_state", "module"):
        if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
            obj = obj[k]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a state dict (got {type(obj).__name__})")
    # DDP-saved checkpoints prefix every key with "module."
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _fmt(keys: List[str], n=12) -> str:
    s = "\n    ".join(keys[:n])
    more = f"\n    ... and {len(keys) - n} more" if len(keys) > n else ""
    return "    " + s + more


def load_checkpoint(model: XPortrait, sd: Dict[str, torch.Tensor], log=print) -> Dict[str, int]:
    """Strict load of the five network prefixes. Keys outside them (cond_stage_model.*,
    betas, alphas_cumprod, ...) are ignored and counted. Raises CheckpointError naming
    missing / unexpected / shape-mismatched keys with their counts."""
    own = model.state_dict()
    relevant = {k: v for k, v in sd.items() if k.startswith(PREFIXES)}
    ignored = len(sd) - len(relevant)
    missing = sorted(k for k in own if k not in relevant and not k.endswith(OPTIONAL_SUFFIXES))
    unexpected = sorted(k for k in relevant if k not in own)
    mismatched = sorted(f"{k}: checkpoint {tuple(relevant[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in relevant if k in own and tuple(relevant[k].shape) != tuple(own[k].shape))
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not match the X-Portrait architecture "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} wrong shape; "
                 f"model has {len(own)} keys, checkpoint has {len(relevant)} under the network prefixes)"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}):\n" + _fmt(missing))
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}):\n" + _fmt(unexpected))
        if mismatched:
            parts.append(f"  shape mismatches ({len(mismatched)}):\n" + _fmt(mismatched))
        raise CheckpointError("\n".join(parts))
    with torch.no_grad():
        for k, v in relevant.items():
            own[k].copy_(v.to(own[k].dtype))
    n_opt = sum(1 for k in own if k not in relevant)
    log(f"loaded {len(relevant)} tensors ({ignored} checkpoint keys outside the network prefixes ignored"
        + (f", {n_opt} position-code buffers recomputed" if n_opt else "") + ")")
    return {"loaded": len(relevant), "ignored": ignored, "recomputed": n_opt}
