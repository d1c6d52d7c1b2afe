"""Build the VGG16 forward and input-gradient (VJP) ONNX graphs from numpy weights.

Three files share one weights file (ONNX external data), so the weights are on disk once:
- ``vgg16_forward.onnx``: ``image`` (N,3,H,W) float32 in [0,1] -> every post-ReLU map
  ``relu1_1`` .. ``relu5_3`` (the feature layers and the masks the backward needs);
- ``vgg16_vjp.onnx``: those 13 maps and ``grad_<layer>`` for each feature layer ->
  ``grad_image`` (N,3,H,W). Max-pool backward uses MaxUnpool (CPU provider);
- ``vgg16_vjp_scatter.onnx``: the same, with ScatterElements in place of MaxUnpool, which
  the CUDA provider lacks;
- ``vgg16_weights.bin``: raw little-endian float32 conv kernels and biases.

Formulation (measured fastest on ORT's CPU provider): conv input gradient as a Conv with
flipped, transposed kernels (flipped inside the graph, constant-folded at load); ReLU
backward as Mul(g, Cast(Greater(a, 0))); max-pool backward from MaxPool indices recomputed
from the saved ReLU output. Export is deterministic: same weights, same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..files import write_atomic
from .vgg16 import FEATURE_LAYERS, IMAGENET_MEAN, IMAGENET_STD, LAYERS
from .weights import SDIST, VGG16_MEMBER, VGG16_SHA256

OPSET = 17
IR_VERSION = 8
FORMAT_VERSION = 1
FORWARD_FILE = "vgg16_forward.onnx"
VJP_FILE = "vgg16_vjp.onnx"
VJP_SCATTER_FILE = "vgg16_vjp_scatter.onnx"
WEIGHTS_FILE = "vgg16_weights.bin"
MODEL_FILES = (FORWARD_FILE, VJP_FILE, VJP_SCATTER_FILE, WEIGHTS_FILE)
MANIFEST_FILE = "manifest.json"
_ALIGN = 4096
_F32 = TensorProto.FLOAT


def _pack_weights(weights: list[tuple[np.ndarray, np.ndarray]]) -> tuple[bytes, list[TensorProto]]:
    """Lay the 26 arrays out in one aligned blob; return it and external-data initializers."""
    blob = bytearray()
    tensors = []
    for i, (kernel, bias) in enumerate(weights):
        for name, array in ((f"conv{i}_w", kernel), (f"conv{i}_b", bias)):
            data = np.ascontiguousarray(array, dtype="<f4").tobytes()
            blob.extend(b"\0" * (-len(blob) % _ALIGN))
            tensor = TensorProto(name=name, data_type=_F32, dims=list(array.shape))
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", WEIGHTS_FILE), ("offset", str(len(blob))),
                               ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            blob.extend(data)
            tensors.append(tensor)
    return bytes(blob), tensors


def _const(name: str, values, dtype=np.float32) -> TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _image_input(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _F32, ["N", "C", "H", "W"])


def _map_info(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _F32, ["N", None, None, None])


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ostransfer",
        producer_version=str(FORMAT_VERSION),
    )
    model.ir_version = IR_VERSION
    return model


def _forward_graph(initializers: list[TensorProto]) -> onnx.GraphProto:
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["x0"]),
    ]
    x, pools = "x0", 0
    for layer in LAYERS:
        if layer.pools > pools:
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{layer.pools}"],
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x, pools = f"pool{layer.pools}", layer.pools
        c = layer.conv
        nodes.append(helper.make_node("Conv", [x, f"conv{c}_w", f"conv{c}_b"], [f"conv{c}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{c}"], [layer.name]))
        x = layer.name
    consts = [_const("mean", np.reshape(IMAGENET_MEAN, (1, 3, 1, 1))),
              _const("std", np.reshape(IMAGENET_STD, (1, 3, 1, 1)))]
    return helper.make_graph(
        nodes, "vgg16_forward", [_image_input("image")],
        [_map_info(layer.name) for layer in LAYERS], initializer=consts + initializers,
    )


def _pool_backward(g: str, saved: str, tag: str, scatter: bool) -> list[onnx.NodeProto]:
    """Route gradient g (pooled size) to the argmax positions of `saved` (the pool input)."""
    nodes = [
        helper.make_node("MaxPool", [saved], [f"{tag}_pooled", f"{tag}_idx"],
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", [saved], [f"{tag}_shape"]),
    ]
    if not scatter:
        nodes.append(helper.make_node("MaxUnpool", [g, f"{tag}_idx", f"{tag}_shape"],
                                      [f"{tag}_out"], kernel_shape=[2, 2], strides=[2, 2]))
        return nodes
    # MaxPool indices are offsets into the flattened (N,C,H,W) input.
    return nodes + [
        helper.make_node("ReduceProd", [f"{tag}_shape"], [f"{tag}_size"], keepdims=1),
        helper.make_node("ConstantOfShape", [f"{tag}_size"], [f"{tag}_zeros"],
                         value=helper.make_tensor("zero", _F32, [1], [0.0])),
        helper.make_node("Reshape", [f"{tag}_idx", "flat"], [f"{tag}_idx_flat"]),
        helper.make_node("Reshape", [g, "flat"], [f"{tag}_g_flat"]),
        helper.make_node("ScatterElements", [f"{tag}_zeros", f"{tag}_idx_flat", f"{tag}_g_flat"],
                         [f"{tag}_scattered"], axis=0),
        helper.make_node("Reshape", [f"{tag}_scattered", f"{tag}_shape"], [f"{tag}_out"]),
    ]


def _vjp_graph(initializers: list[TensorProto], scatter: bool) -> onnx.GraphProto:
    kernels = [t for t in initializers if t.name.endswith("_w")]
    nodes: list[onnx.NodeProto] = []
    g = None
    for layer in reversed(LAYERS):
        c = layer.conv
        if layer.name in FEATURE_LAYERS:
            if g is None:
                g = f"grad_{layer.name}"
            else:
                nodes.append(helper.make_node("Add", [g, f"grad_{layer.name}"], [f"gsum{c}"]))
                g = f"gsum{c}"
        nodes += [
            helper.make_node("Greater", [layer.name, "zero"], [f"active{c}"]),
            helper.make_node("Cast", [f"active{c}"], [f"mask{c}"], to=_F32),
            helper.make_node("Mul", [g, f"mask{c}"], [f"gpre{c}"]),
            # input gradient of a 3x3 pad-1 conv: correlate with the flipped, transposed kernel
            helper.make_node("Transpose", [f"conv{c}_w"], [f"conv{c}_wt"], perm=[1, 0, 2, 3]),
            helper.make_node("Slice", [f"conv{c}_wt", "flip_starts", "flip_ends", "flip_axes",
                                       "flip_steps"], [f"conv{c}_wf"]),
            helper.make_node("Conv", [f"gpre{c}", f"conv{c}_wf"], [f"gin{c}"],
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        ]
        g = f"gin{c}"
        if c > 0 and LAYERS[c - 1].pools < layer.pools:
            nodes += _pool_backward(g, LAYERS[c - 1].name, f"unpool{c}", scatter)
            g = f"unpool{c}_out"
    nodes.append(helper.make_node("Div", [g, "std"], ["grad_image"]))
    consts = [
        _const("std", np.reshape(IMAGENET_STD, (1, 3, 1, 1))),
        _const("zero", 0.0),
        _const("flip_starts", [-1, -1], np.int64),
        _const("flip_ends", [np.iinfo(np.int64).min] * 2, np.int64),
        _const("flip_axes", [2, 3], np.int64),
        _const("flip_steps", [-1, -1], np.int64),
    ]
    if scatter:
        consts.append(_const("flat", [-1], np.int64))
    inputs = [_map_info(layer.name) for layer in LAYERS]
    inputs += [_map_info(f"grad_{name}") for name in FEATURE_LAYERS]
    name = "vgg16_vjp_scatter" if scatter else "vgg16_vjp"
    return helper.make_graph(nodes, name, inputs, [_image_input("grad_image")],
                             initializer=consts + kernels)


def build_models(weights: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, bytes]:
    """Serialise every model file (name -> bytes) from 13 (kernel OIHW, bias) pairs."""
    blob, initializers = _pack_weights(weights)
    return {
        FORWARD_FILE: _model(_forward_graph(initializers)).SerializeToString(),
        VJP_FILE: _model(_vjp_graph(initializers, scatter=False)).SerializeToString(),
        VJP_SCATTER_FILE: _model(_vjp_graph(initializers, scatter=True)).SerializeToString(),
        WEIGHTS_FILE: blob,
    }


def manifest(files: dict[str, bytes]) -> dict:
    """What the exported files are: opset, layers, and the checksum of every file."""
    return {
        "format_version": FORMAT_VERSION,
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "layers": [layer.name for layer in LAYERS],
        "feature_layers": list(FEATURE_LAYERS),
        "inputs": {"forward": "image", "vjp": [f"grad_{n}" for n in FEATURE_LAYERS]},
        "weights_source": {"sdist": SDIST, "member": VGG16_MEMBER, "sha256": VGG16_SHA256},
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    return (json.dumps(manifest(files), indent=2) + "\n").encode()


def write_models(weights: list[tuple[np.ndarray, np.ndarray]], out_dir: Path) -> dict:
    """Export into out_dir atomically: each file goes to a temporary name, then is renamed.

    The manifest is renamed last, so a directory with a manifest has every file it names.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = build_models(weights)
    files_with_manifest = {**files, MANIFEST_FILE: manifest_bytes(files)}
    for name, data in files_with_manifest.items():
        write_atomic(out_dir / name, data)
    return manifest(files)
