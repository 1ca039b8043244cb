"""Loading the published X-Portrait checkpoint (model_state-*.th) into XPortrait, strictly."""
from __future__ import annotations

import contextlib
import hashlib
from typing import Dict, List, Optional

import torch

from .nn import XPortrait

# Every key of the upstream model (test/fixtures/xportrait-upstream-keys.json) is either consumed
# (under these prefixes, and then it must match our network key for key) or ignored by a rule below;
# any other key is an error, so nothing is dropped by accident.
PREFIXES = ("model.diffusion_model.", "appearance_control_model.", "pose_control_model.",
            "local_pose_control_model.", "first_stage_model.")
# position codes are a deterministic function of the shape; tolerated when absent
OPTIONAL_SUFFIXES = (".pos_encoder.pe",)
# the training noise schedule and loss weights of upstream's DDPM; the LCM schedule is computed from
# the pack's scheduler config (stages.lcm_schedule, server/schedulers/lcm.ts)
SCHEDULE_BUFFERS = frozenset((
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2", "logvar"))
# rule -> why the streaming renderer does not read those keys
IGNORED_RULES = {
    "cond_stage_model": "CLIP ViT-L/14 text encoder: the renderer takes the empty-prompt embedding "
                        "precomputed once (export --context)",
    "schedule": "DDPM training schedule buffers (" + ", ".join(sorted(SCHEDULE_BUFFERS)) + ")",
}


def ignore_rule(key: str) -> Optional[str]:
    """The IGNORED_RULES entry that covers a key outside PREFIXES, or None."""
    if key.startswith("cond_stage_model."):
        return "cond_stage_model"
    if key in SCHEDULE_BUFFERS:
        return "schedule"
    return None


@contextlib.contextmanager
def meta_parameters():
    """Build modules inside this block with every parameter on the meta device (shapes, no memory,
    no init cost); torch 1.13 has no default-device context. Buffers stay real. It patches
    nn.Module for the whole process while open: for tools and tests, not for a serving thread."""
    register = torch.nn.Module.register_parameter

    def to_meta(self, name, param):
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        return register(self, name, param)

    torch.nn.Module.register_parameter = to_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


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
    """Strict load of the five network prefixes. Keys outside them are ignored only by an
    IGNORED_RULES rule, and counted per rule; any other key is unexpected. Raises CheckpointError
    naming missing / unexpected / shape-mismatched keys with their counts."""
    own = model.state_dict()
    relevant = {k: v for k, v in sd.items() if k.startswith(PREFIXES)}
    by_rule = {r: 0 for r in IGNORED_RULES}
    outside = []
    for k in sd:
        if k not in relevant:
            rule = ignore_rule(k)
            if rule is None:
                outside.append(k)
            else:
                by_rule[rule] += 1
    ignored = sum(by_rule.values())
    missing = sorted(k for k in own if k not in relevant and not k.endswith(OPTIONAL_SUFFIXES))
    unexpected = sorted([k for k in relevant if k not in own] + outside)
    mismatched = sorted(f"{k}: checkpoint {tuple(relevant[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in relevant if k in own and tuple(relevant[k].shape) != tuple(own[k].shape))
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not match the X-Portrait architecture "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} wrong shape; "
                 f"model has {len(own)} keys, checkpoint has {len(relevant)} under the network prefixes)"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}):\n" + _fmt(missing))
        if unexpected:
            hint = (f"; {len(outside)} outside the network prefixes and not covered by an ignore rule "
                    f"({', '.join(IGNORED_RULES)})" if outside else "")
            parts.append(f"  unexpected keys ({len(unexpected)}{hint}):\n" + _fmt(unexpected))
        if mismatched:
            parts.append(f"  shape mismatches ({len(mismatched)}):\n" + _fmt(mismatched))
        raise CheckpointError("\n".join(parts))
    with torch.no_grad():
        for k, v in relevant.items():
            own[k].copy_(v.to(own[k].dtype))
    n_opt = sum(1 for k in own if k not in relevant)
    log(f"loaded {len(relevant)} tensors (ignored: "
        + ", ".join(f"{n} {r}" for r, n in by_rule.items())
        + (f"; {n_opt} position-code buffers recomputed" if n_opt else "") + ")")
    return {"loaded": len(relevant), "ignored": ignored, "ignored_by_rule": by_rule, "recomputed": n_opt}
