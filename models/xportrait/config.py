"""Architecture configuration for the X-Portrait network (full SD1.5 size and a tiny test size).

The tiny configuration has exactly the same module tree and therefore the same state-dict key
names as the published checkpoint; only widths, depths and spatial sizes are smaller.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Tuple


@dataclass
class UNetCfg:
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: Tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: Tuple[int, ...] = (4, 2, 1)
    num_heads: int = 8
    transformer_depth: int = 1
    context_dim: int = 768
    norm_groups: int = 32
    # ControlNet hint encoder widths (input_hint_block); the last conv maps to model_channels
    hint_channels: int = 3
    hint_widths: Tuple[int, ...] = (16, 16, 32, 32, 96, 96, 256)


@dataclass
class MotionCfg:
    num_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: Tuple[str, ...] = ("Temporal_Self", "Temporal_Self")
    pe_max_len: int = 24
    norm_groups: int = 32


@dataclass
class VAECfg:
    ch: int = 128
    ch_mult: Tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3
    norm_groups: int = 32
    scale_factor: float = 0.18215


@dataclass
class TAESDCfg:
    width: int = 64
    latent_channels: int = 4


@dataclass
class ModelCfg:
    name: str = "sd15"
    unet: UNetCfg = field(default_factory=UNetCfg)
    motion: MotionCfg = field(default_factory=MotionCfg)
    vae: VAECfg = field(default_factory=VAECfg)
    taesd: TAESDCfg = field(default_factory=TAESDCfg)
    image_size: int = 512          # pixels (portrait, driving crop, local patches canvas)
    context_tokens: int = 77       # text-embedding tokens baked into the graphs

    @property
    def latent_size(self) -> int:
        return self.image_size // (2 ** (len(self.vae.ch_mult) - 1))

    def to_dict(self):
        return asdict(self)


def full_config(image_size: int = 512) -> ModelCfg:
    return ModelCfg(name="sd15", image_size=image_size)


def tiny_config() -> ModelCfg:
    """Tiny geometry: image 64x64, latent 8x8x4, UNet widths 32/64, 1 res block and 1
    transformer block per level, motion modules with 2 heads, VAE width 32."""
    return ModelCfg(
        name="tiny",
        unet=UNetCfg(model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(1, 2), num_heads=2, transformer_depth=1,
                     context_dim=32, norm_groups=8, hint_widths=(8, 8, 8, 8, 16, 16, 16)),
        motion=MotionCfg(num_heads=2, num_transformer_block=1, pe_max_len=24, norm_groups=8),
        vae=VAECfg(ch=16, ch_mult=(1, 1, 2, 2), num_res_blocks=1, norm_groups=8),
        taesd=TAESDCfg(width=8),
        image_size=64,
        context_tokens=8,
    )
