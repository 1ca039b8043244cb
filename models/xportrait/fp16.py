"""fp32 -> fp16 ONNX conversion (own implementation; no onnxconverter-common here).

Policy:
  * graph float inputs/outputs, weights and activations become float16;
  * the timestep sub-graph (everything computed only from int64 inputs and constants: sinusoidal
    embedding, alphas_cumprod gather, c_skip/c_out) stays float32 and is cast at its boundary:
    fp16 cannot hold t * freq for t ~ 1000 accurately;
  * normalisations (InstanceNormalization from GroupNorm, LayerNormalization) run in float32 with
    casts around them (their statistics are the usual fp16 overflow point).
"""
from __future__ import annotations

import os
from typing import Dict, Set

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32_OPS = {"InstanceNormalization", "LayerNormalization"}
FP32_SLOTS = {"Resize": {1, 2}}   # roi / scales must stay float32


def _to16(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float16)
    return numpy_helper.from_array(arr, t.name)


def convert(model: onnx.ModelProto) -> onnx.ModelProto:
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    # shape inference on a weight-free view (protobuf cannot serialise > 2 GB): initializers
    # become typed graph inputs for the duration of the inference
    g = model.graph
    saved = list(g.initializer)
    n_in = len(g.input)
    g.ClearField("initializer")
    for t in saved:
        g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    del g.input[n_in:]
    g.initializer.extend(saved)
    etype: Dict[str, int] = {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        etype[v.name] = v.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        etype[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    etype[n.output[0]] = a.t.data_type

    # 1. fp32 region: nodes fed only by int64 graph inputs / region values / constants,
    #    with at least one non-constant source
    static: Set[str] = set(inits)
    for n in g.node:
        if n.op_type == "Constant":
            static.add(n.output[0])
    region_vals: Set[str] = {i.name for i in g.input if i.type.tensor_type.elem_type != F32}
    region_nodes = set()
    for idx, n in enumerate(g.node):
        if n.op_type == "Constant":
            continue
        ins = [i for i in n.input if i]
        if ins and all(i in static or i in region_vals for i in ins) and any(i in region_vals for i in ins):
            region_nodes.add(idx)
            region_vals.update(n.output)

    # consumers of each value
    consumers: Dict[str, list] = {}
    for idx, n in enumerate(g.node):
        for k, i in enumerate(n.input):
            consumers.setdefault(i, []).append((idx, k))

    def fp32_consumer(c):
        idx, k = c
        op = g.node[idx].op_type
        return idx in region_nodes or op in KEEP_FP32_OPS or k in FP32_SLOTS.get(op, ())

    # 2. constants/initializers: fp32 copies stay for fp32 consumers, fp16 for the rest
    new_inits = []
    rename16: Dict[str, str] = {}   # value -> its fp16 twin (when both are needed)
    for t in g.initializer:
        if t.data_type != F32:
            new_inits.append(t)
            continue
        cons = consumers.get(t.name, [])
        need32 = any(fp32_consumer(c) for c in cons)
        need16 = any(not fp32_consumer(c) for c in cons) or not cons
        if need32:
            new_inits.append(t)
            if need16:
                t16 = _to16(t)
                t16.name = t.name + "__fp16"
                rename16[t.name] = t16.name
                new_inits.append(t16)
        else:
            new_inits.append(_to16(t))
    del g.initializer[:]
    g.initializer.extend(new_inits)

    new_nodes = []
    cast_cache: Dict[tuple, str] = {}

    def cast(name, to):
        key = (name, to)
        if key not in cast_cache:
            out = f"{name}__to{'16' if to == F16 else '32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=out))
            cast_cache[key] = out
        return cast_cache[key]

    for idx, n in enumerate(g.node):
        if n.op_type == "Constant":
            a = next((a for a in n.attribute if a.name == "value"), None)
            if a is not None and a.t.data_type == F32:
                cons = consumers.get(n.output[0], [])
                need32 = any(fp32_consumer(c) for c in cons)
                need16 = any(not fp32_consumer(c) for c in cons)
                if need16 and need32:
                    t16 = _to16(a.t)
                    twin = n.output[0] + "__fp16"
                    new_nodes.append(helper.make_node("Constant", [], [twin], value=t16))
                    rename16[n.output[0]] = twin
                elif need16:
                    a.t.CopyFrom(_to16(a.t))
                    etype[n.output[0]] = F16
            new_nodes.append(n)
            continue
        if idx in region_nodes:
            new_nodes.append(n)
            continue
        keep32 = n.op_type in KEEP_FP32_OPS
        for k, i in enumerate(n.input):
            if not i or k in FP32_SLOTS.get(n.op_type, ()):
                continue
            is_float = etype.get(i) in (F32, F16)
            if keep32:
                if i in inits or (i in static and i not in rename16 and etype.get(i) == F32):
                    continue                                   # stays fp32
                if is_float:
                    n.input[k] = cast(i, F32)
            else:
                if i in rename16:
                    n.input[k] = rename16[i]
                elif i in region_vals and etype.get(i) == F32:
                    n.input[k] = cast(i, F16)
        if keep32:
            outs = list(n.output)
            for k, o in enumerate(outs):
                n.output[k] = o + "__fp32"
            new_nodes.append(n)
            for o in outs:
                new_nodes.append(helper.make_node("Cast", [o + "__fp32"], [o], to=F16, name=o + "__cast16"))
            continue
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == F32:
                    a.i = F16
        for a in n.attribute:   # e.g. ConstantOfShape value
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(_to16(a.t))
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == F32:
            v.type.tensor_type.elem_type = F16
    del g.value_info[:]
    # graph outputs produced inside the fp32 region need a cast
    for v in g.output:
        if v.name in region_vals:
            raise RuntimeError(f"output {v.name} comes from the fp32 timestep region")
    return model


def convert_file(src: str, dst: str):
    m = onnx.load(src, load_external_data=True)
    m16 = convert(m)
    from .export import save_onnx
    save_onnx(m16, dst)
    onnx.checker.check_model(dst)
