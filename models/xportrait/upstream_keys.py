"""Regenerate test/fixtures/xportrait-upstream-keys.json: the state-dict names, shapes and dtypes of
the upstream X-Portrait model definition, built on the meta device (no weights, no GPU, no memory).

    python3 -m models.xportrait.upstream_keys --upstream DIR --upstream-commit HASH \
        --diffusers DIR --diffusers-version v0.26.0 [--out FILE]

  --upstream   a checkout (or `git archive`) of github.com/bytedance/X-Portrait; its config file and
               model_lib/ are imported from there, nothing of it is copied into this project
  --diffusers  the folder that holds the `diffusers` package (src/ of a diffusers checkout at the
               version upstream pins, 0.26.0): its Attention / FeedForward classes name the motion
               modules' parameters, so they are run for real, not stubbed

The upstream code imports packages that Debian does not ship. Each is replaced by the stub below,
written to a temporary folder; every stub only satisfies an import whose object takes no part in the
state dict (training base classes, forward-pass helpers, hub download code). The one exception is
said loudly: the CLIP text encoder (`transformers`) cannot be built here, so `cond_stage_model`
holds no keys in the fixture; docs/MODELS.md accounts for its 123.06 M parameters.
Debian packages the build needs: python3-torch python3-omegaconf python3-torchvision python3-tqdm
python3-pil python3-packaging python3-requests python3-filelock.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import types
from typing import Dict, List

CONFIG = "config/cldm_v15_appearance_pose_local_mm.yaml"

# module path -> (source, why the state dict does not depend on it)
STUBS: Dict[str, tuple] = {
    "pytorch_lightning/__init__.py": (
        "import torch.nn as _nn\n"
        "class LightningModule(_nn.Module):\n    pass\n",
        "LightningModule is the training base class of DDPM/AutoencoderKL; it owns no parameters or "
        "buffers, so an nn.Module subclass gives the same state dict"),
    "pytorch_lightning/utilities/__init__.py": ("", "package for the line below"),
    "pytorch_lightning/utilities/distributed.py": (
        "def rank_zero_only(fn):\n    return fn\n",
        "rank_zero_only decorates training hooks only"),
    "einops/__init__.py": (
        "def _forward_only(*a, **k):\n    raise NotImplementedError('einops stub: forward passes are not run')\n"
        "rearrange = repeat = reduce = _forward_only\n",
        "rearrange/repeat are called in forward passes only, never while building"),
    "xformers/__init__.py": ("", "importable, as upstream's requirements install it: upstream then picks "
                                 "its xformers attention classes, whose parameters are named as the plain "
                                 "ones; the kernels run in forward passes only"),
    "xformers/ops.py": ("", "as above"),
    "open_clip/__init__.py": ("", "FrozenOpenCLIPEmbedder is not the configured text encoder"),
    "transformers/__init__.py": (
        "import torch.nn as _nn\n"
        "class _NotBuilt(_nn.Module):\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, *a, **k):\n        return cls()\n"
        "CLIPTokenizer = CLIPTextModel = T5Tokenizer = T5EncoderModel = _NotBuilt\n",
        "NOT state-dict neutral: FrozenCLIPEmbedder's CLIPTextModel.from_pretrained"
        "('openai/clip-vit-large-patch14') needs the transformers package and the hub weights, neither "
        "reachable here; it is built as an empty module, so cond_stage_model.* is absent from the list"),
}
# any attribute or submodule of these is a placeholder class: imported at module level by diffusers,
# used only by its hub download / upload / model-card code
PERMISSIVE = {"huggingface_hub": "diffusers imports hub helpers (create_repo, hf_hub_download, "
                                 "error classes, constants) at module level; none is called while building"}


class _Placeholder(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Exception,), {})


class _PermissiveFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in PERMISSIVE:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _Placeholder(spec.name)
        m.__path__ = []
        return m

    def __init__(self, home: str):
        self.home = home

    def exec_module(self, module):
        if module.__name__ == "huggingface_hub.constants":
            module.HF_HOME = module.HF_HUB_CACHE = self.home
            module.HF_HUB_DISABLE_TELEMETRY = module.HF_HUB_OFFLINE = True


def write_stubs(root: str) -> None:
    for rel, (src, _why) in STUBS.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(src)


def build_on_meta(upstream: str):
    """Instantiate upstream's config with every parameter on the meta device. Buffers stay real:
    they are small (noise schedule, position codes) and upstream computes some from others."""
    from omegaconf import OmegaConf
    from model_lib.ControlNet.ldm.util import instantiate_from_config

    from .checkpoint import meta_parameters
    with meta_parameters():
        return instantiate_from_config(OmegaConf.load(os.path.join(upstream, CONFIG)).model)


def write_fixture(out: str, provenance: dict, rows: List[list]) -> None:
    """One key per line so that a diff of the fixture reads as a diff of the architecture."""
    head = json.dumps(provenance, indent=1)
    body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    with open(out, "w") as f:
        f.write('{"provenance": ' + head + ',\n"keys": [\n' + body + "\n]}\n")


def parameters_by_prefix(rows: List[list]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for key, shape, _dtype, kind in rows:
        if kind == "p":
            top = "model.diffusion_model" if key.startswith("model.") else key.split(".")[0]
            n = 1
            for d in shape:
                n *= d
            out[top] = out.get(top, 0) + n
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--upstream-commit", required=True, help="the commit the --upstream tree was taken from")
    ap.add_argument("--diffusers", required=True)
    ap.add_argument("--diffusers-version", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures",
                                                  "xportrait-upstream-keys.json"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xpl-upstream-stubs-") as stubs:
        write_stubs(stubs)
        sys.meta_path.insert(0, _PermissiveFinder(os.path.join(stubs, "hf-home")))
        sys.path[:0] = [stubs, os.path.abspath(a.diffusers), os.path.abspath(a.upstream)]
        import torch
        with contextlib.redirect_stdout(sys.stderr):   # upstream prints while building
            model = build_on_meta(a.upstream)
    params = {n for n, _ in model.named_parameters()}
    rows = [[k, list(v.shape), str(v.dtype).replace("torch.", ""), "p" if k in params else "b"]
            for k, v in model.state_dict().items()]
    provenance = {
        "source": "https://github.com/bytedance/X-Portrait",
        "commit": a.upstream_commit,
        "config": CONFIG,
        "built": f"{type(model).__module__}.{type(model).__name__} from the config's `model` entry, every "
                 f"parameter on the meta device; torch {torch.__version__}, Python {sys.version.split()[0]}",
        "diffusers": f"{a.diffusers_version} (real source: Attention/FeedForward name the motion modules' keys)",
        "stubs": {rel: why for rel, (_src, why) in STUBS.items()}
        | {f"{name} (any attribute)": why for name, why in PERMISSIVE.items()},
        "date": datetime.date.today().isoformat(),
        "generator": "python3 -m models.xportrait.upstream_keys (docs/MODELS.md, 'Checkpoint compatibility')",
        "row": ["state-dict key", "shape", "dtype", "p = parameter, b = persistent buffer"],
        "state_dict_keys": len(rows),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_by_prefix": parameters_by_prefix(rows),
    }
    write_fixture(a.out, provenance, rows)
    print(f"{len(rows)} keys, {provenance['parameters'] / 1e6:.2f} M parameters -> {os.path.relpath(a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
