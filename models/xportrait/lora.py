"""SD1.5 LoRA (e.g. LCM-LoRA) parsing and fusion into the ldm-named main UNet.

Accepted key styles (all map diffusers UNet2DConditionModel module names to ldm names):
  kohya      lora_unet_<module_with_underscores>.lora_down.weight / .lora_up.weight / .alpha
  diffusers  unet.<module>.lora.down.weight / .lora.up.weight   (also `.processor.to_q_lora.*`)
  peft       unet.<module>.lora_A.weight / .lora_B.weight (+ optional .alpha)
Text-encoder entries (lora_te*, text_encoder.*) are skipped and counted: this project bakes the
empty-prompt embedding into the graphs.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import UNetCfg


def diffusers_to_ldm_map(u: UNetCfg) -> Dict[str, str]:
    """diffusers module name -> ldm module name (relative to model.diffusion_model)."""
    m: Dict[str, str] = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
                         "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    nrb = u.num_res_blocks
    nlev = len(u.channel_mult)
    res = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    attn_sub = ["norm", "proj_in", "proj_out"]
    tb_sub = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
              "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "norm1", "norm2", "norm3"]

    def add_attn(d, l):
        for s in attn_sub:
            m[f"{d}.{s}"] = f"{l}.{s}"
        for k in range(u.transformer_depth):
            for s in tb_sub:
                m[f"{d}.transformer_blocks.{k}.{s}"] = f"{l}.transformer_blocks.{k}.{s}"

    def add_res(d, l):
        for a, b in res.items():
            m[f"{d}.{a}"] = f"{l}.{b}"

    ds = 1
    for i in range(nlev):
        has_attn = ds in u.attention_resolutions
        for j in range(nrb):
            idx = 1 + i * (nrb + 1) + j
            add_res(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{idx}.0")
            if has_attn:
                add_attn(f"down_blocks.{i}.attentions.{j}", f"input_blocks.{idx}.1")
        if i != nlev - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (nrb + 1)}.0.op"
            ds *= 2
    add_res("mid_block.resnets.0", "middle_block.0")
    add_attn("mid_block.attentions.0", "middle_block.1")
    add_res("mid_block.resnets.1", "middle_block.2")
    for i in range(nlev):
        level = nlev - 1 - i
        has_attn = ds in u.attention_resolutions
        for j in range(nrb + 1):
            idx = i * (nrb + 1) + j
            add_res(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{idx}.0")
            if has_attn:
                add_attn(f"up_blocks.{i}.attentions.{j}", f"output_blocks.{idx}.1")
        if level != 0:
            m[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (nrb + 1) + nrb}.{2 if has_attn else 1}.conv"
            ds //= 2
    return m


class LoraError(ValueError):
    pass


_SUFFIXES = [
    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".alpha", "alpha"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    ("_lora.down.weight", "down"), ("_lora.up.weight", "up"),
]


def parse_lora(sd: Dict[str, torch.Tensor], u: UNetCfg):
    """Group LoRA tensors by ldm target. Returns (targets, report) with
    targets: {ldm_module: {"down", "up", "alpha"?}}."""
    dmap = diffusers_to_ldm_map(u)
    kohya = {"lora_unet_" + k.replace(".", "_"): v for k, v in dmap.items()}
    groups: Dict[str, Dict[str, torch.Tensor]] = {}
    skipped_te, unknown = [], []
    for key, t in sd.items():
        if key.startswith(("lora_te", "text_encoder", "te.")):
            skipped_te.append(key)
            continue
        for suf, kind in _SUFFIXES:
            if key.endswith(suf):
                base = key[: -len(suf)]
                break
        else:
            unknown.append(key)
            continue
        if base.startswith("lora_unet_"):
            ldm = kohya.get(base)
        else:
            b = re.sub(r"^(base_model\.model\.)?(unet\.)?", "", base)
            if suf.startswith("_lora"):          # attn processor style: ...attn1.processor.to_q
                b = b.replace(".processor.", ".").replace(".to_out", ".to_out.0")
            ldm = dmap.get(b)
        if ldm is None:
            unknown.append(key)
            continue
        groups.setdefault(ldm, {})[kind] = t
    for k, g in groups.items():
        if "down" not in g or "up" not in g:
            raise LoraError(f"LoRA entry for {k} lacks its {'down' if 'down' not in g else 'up'} matrix")
    return groups, {"targets": len(groups), "skipped_text_encoder": len(skipped_te),
                    "unmatched": len(unknown), "unmatched_examples": unknown[:10]}


def lora_delta(g: Dict[str, torch.Tensor], shape: torch.Size, scale: float = 1.0) -> torch.Tensor:
    down = g["down"].float()
    up = g["up"].float()
    r = down.shape[0]
    alpha = float(g["alpha"]) if "alpha" in g else float(r)
    d = up.reshape(up.shape[0], -1) @ down.reshape(r, -1)          # [out, in*kh*kw]
    if d.numel() != torch.Size(shape).numel():
        raise LoraError(f"LoRA delta {tuple(d.shape)} does not fit weight {tuple(shape)}")
    return (d * (alpha / r) * scale).reshape(shape)


def fuse_lora(unet: nn.Module, groups, scale: float = 1.0) -> int:
    """Add the LoRA deltas into the weights of `unet` (ldm-named). Returns the number fused."""
    mods = dict(unet.named_modules())
    missing = [k for k in groups if k not in mods]
    if missing:
        raise LoraError(f"{len(missing)} LoRA targets do not exist in the UNet, e.g. {missing[:5]}")
    with torch.no_grad():
        for k, g in groups.items():
            w = mods[k].weight
            w += lora_delta(g, w.shape, scale).to(w.dtype)
    return len(groups)


class _RuntimeLora(nn.Module):
    """Applies a LoRA at run time: y = base(x) + scale * alpha/r * up(down(x))."""

    def __init__(self, base: nn.Module, g, scale):
        super().__init__()
        self.base = base
        down, up = g["down"].float(), g["up"].float()
        r = down.shape[0]
        self.s = scale * (float(g["alpha"]) if "alpha" in g else float(r)) / r
        if isinstance(base, nn.Conv2d):
            self.down = down.reshape(r, base.in_channels, *base.kernel_size)
            self.up = up.reshape(up.shape[0], r, 1, 1)
        else:
            self.down = down.reshape(r, -1)
            self.up = up.reshape(up.shape[0], r)

    def forward(self, x):
        b = self.base
        if isinstance(b, nn.Conv2d):
            h = F.conv2d(x, self.down, None, b.stride, b.padding)
            return b(x) + self.s * F.conv2d(h, self.up)
        return b(x) + self.s * F.linear(F.linear(x, self.down), self.up)


def apply_lora_runtime(unet: nn.Module, groups, scale: float = 1.0):
    """Wrap target modules in place (reference implementation for tests)."""
    for k, g in groups.items():
        parent_name, _, child = k.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        base = getattr(parent, child) if not child.isdigit() else parent[int(child)]
        wrapped = _RuntimeLora(base, g, scale)
        if child.isdigit():
            parent[int(child)] = wrapped
        else:
            setattr(parent, child, wrapped)
