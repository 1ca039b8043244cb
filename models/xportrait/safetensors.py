"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

Format: 8-byte little-endian u64 header length N, N bytes of JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then raw
little-endian tensor bytes (offsets relative to the end of the header).
"""
from __future__ import annotations

import json
import struct
from typing import Dict, Optional

import numpy as np
import torch

_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


class SafetensorsError(ValueError):
    pass


def read_header(path: str):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 1024 * 1024:
            raise SafetensorsError(f"{path}: header length {n} is implausible")
        hdr = json.loads(f.read(n).decode("utf-8"))
    return hdr, 8 + n


def load_file(path: str) -> Dict[str, torch.Tensor]:
    hdr, base = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = data[base + b: base + e]
        dt = info["dtype"]
        shape = tuple(info["shape"])
        if dt == "BF16":
            u16 = np.frombuffer(buf.tobytes(), dtype="<u2").astype(np.uint32) << 16
            t = torch.from_numpy(u16.view(np.float32).reshape(shape).copy())
        elif dt in _NP:
            arr = np.frombuffer(buf.tobytes(), dtype=np.dtype(_NP[dt]).newbyteorder("<"))
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise SafetensorsError(f"{path}: tensor {name} has {arr.size} elements, header says {shape}")
            t = torch.from_numpy(arr.reshape(shape).astype(_NP[dt]))
        else:
            raise SafetensorsError(f"{path}: tensor {name} has unsupported dtype {dt}")
        out[name] = t
    return out


def save_file(tensors: Dict[str, torch.Tensor], path: str, metadata: Optional[Dict[str, str]] = None):
    hdr = {}
    if metadata:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            b = (t.view(torch.int16).numpy().astype("<i2")).tobytes()
        else:
            b = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        hdr[name] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # align data start to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
