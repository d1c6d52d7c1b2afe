"""The workloads of tools/bench_vgg.py, each built inside its own worker process: the ORT and
torch VGG16 forward and forward+VJP at one size, and the peak GFLOP/s probes."""

from __future__ import annotations

from typing import Callable

from ostransfer.nets.vgg16 import conv_flops

MATMUL_N = 4096  # peak probe: (n x n) @ (n x n) float32
CONV_PROBE = (256, 256, 128, 128)  # peak probe: Cin, Cout, H, W of one 3x3 pad-1 conv


def step_flops(kind: str, size: int) -> int:
    return conv_flops(size, size) * (2 if kind.endswith("vjp") else 1)


def _image(size: int):
    import numpy as np

    return np.random.default_rng(0).random((size, size, 3), dtype=np.float32)


def _upstream_grads(size: int) -> dict:
    from ostransfer.research.measure import upstream_grads

    return upstream_grads(size, size)


def make_ort(kind: str, size: int, threads: int) -> Callable[[], object]:
    """A zero-argument step for ort-fwd / ort-vjp on the package's engine."""
    from ostransfer.nets.engine import VGGFeatures

    engine = VGGFeatures("cpu", threads=threads)
    image = _image(size)
    if kind == "ort-fwd":
        return lambda: engine.forward(image)
    grads = _upstream_grads(size)

    def step():
        engine.forward(image)
        return engine.backward(grads)

    return step


def make_torch(kind: str, size: int, threads: int) -> Callable[[], object]:
    import torch

    from ostransfer.nets.provision import fetch_weights
    from ostransfer.nets.vgg16 import FEATURE_LAYERS
    from ostransfer.nets.weights import load_vgg16_weights
    from ostransfer.research.torch_reference import TorchVGG16

    torch.set_num_threads(threads)
    vgg = TorchVGG16(load_vgg16_weights(fetch_weights()), dtype=torch.float32)
    image = torch.from_numpy(_image(size)).permute(2, 0, 1).unsqueeze(0).contiguous()
    if kind == "torch-fwd":
        def step():
            with torch.no_grad():
                return vgg(image)

        return step
    grads = [torch.from_numpy(g) for g in _upstream_grads(size).values()]

    def step():
        x = image.detach().requires_grad_(True)
        maps = vgg(x)
        (grad,) = torch.autograd.grad([maps[n] for n in FEATURE_LAYERS], [x], grads)
        return grad

    return step


def make_peak_matmul(threads: int) -> tuple[Callable[[], object], int]:
    import numpy as np

    try:  # numpy's BLAS pool (the environment variables set by the parent work too)
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    rng = np.random.default_rng(2)
    a = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    out = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=out)), 2 * MATMUL_N ** 3


def make_peak_conv(threads: int) -> tuple[Callable[[], object], int]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cin, cout, h, w = CONV_PROBE
    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(
        (rng.standard_normal((cout, cin, 3, 3)) * 0.02).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "conv_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, h, w])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = rng.random((1, cin, h, w), dtype=np.float32)
    y = np.empty((1, cout, h, w), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
    binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    def step(keep=(x, y)):  # the binding points into x and y: keep them alive
        session.run_with_iobinding(binding)

    return step, 2 * cin * cout * 9 * h * w


def build(kind: str, size: int, threads: int) -> tuple[Callable[[], object], int]:
    """(step, FLOPs per step) of a configuration or probe."""
    if kind.startswith("ort-"):
        return make_ort(kind, size, threads), step_flops(kind, size)
    if kind.startswith("torch-"):
        return make_torch(kind, size, threads), step_flops(kind, size)
    if kind == "peak-matmul":
        return make_peak_matmul(threads)
    if kind == "peak-conv":
        return make_peak_conv(threads)
    raise ValueError(f"unknown configuration {kind!r}")
