"""Measurement tools of ``compare`` and ``bench``: FLOP counts of one evaluation, timing, a
measured matmul peak, and the measurement child, one side of an evaluation (``ours``: ONNX
Runtime + hand-written gradients; ``torch``: torch autograd, see ``research.compare``) run in
a process of its own so that its peak resident memory (VmHWM) is its own.

Nothing here imports torch at module level: the torch side is loaded only inside a child.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..method import losses
from ..method.objective import Objective
from ..nets.engine import VGGFeatures
from ..nets.vgg16 import FEATURE_LAYERS, LAYER_BY_NAME, map_shape
from ..presets import DEFAULT_PRESET
from .host import peak_rss

# ---------------------------------------------------------------------------------------
# FLOPs


def loss_flops(n: int, m: int, d: int) -> int:
    """The large products of one loss evaluation with its gradient (an approximation):
    REMD's N x M cosine matrix (2NMD), the content self-similarity and its gradient
    (2 x 2N^2 D), the output covariance and its gradient (2 x 2ND^2)."""
    return 2 * n * m * d + 4 * n * n * d + 4 * n * d * d


# ---------------------------------------------------------------------------------------
# timing


def time_calls(step: Callable[[], Any], repeat: int, warmup: int = 1,
               sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """Call ``step`` ``warmup`` times untimed, then ``repeat`` times timed (wall clock)."""
    for _ in range(warmup):
        step()
        if sync:
            sync()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        step()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return summary(times)


def summary(times: Sequence[float]) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_s": median, "min_s": min(times), "times_s": list(times),
            "per_s": 1.0 / median if median > 0 else math.inf}


def matmul_peak(repeat: int = 3, n: int = 2048, device: str = "cpu") -> dict[str, Any]:
    """A measured float32 peak: the best of ``repeat`` (n x n) @ (n x n) products (numpy's
    BLAS on the CPU, CuPy on a CUDA device)."""
    if device == "cuda":
        import cupy as xp

        sync = xp.cuda.get_current_stream().synchronize
        n = max(n, 8192)
        what = f"cupy float32 matmul {n}x{n}"
    else:
        xp, sync = np, None
        what = f"numpy float32 matmul {n}x{n}"
    rng = np.random.default_rng(7)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    out = xp.empty_like(a)
    timing = time_calls(lambda: xp.matmul(a, b, out=out), max(2, repeat), warmup=1, sync=sync)
    flops = 2 * n ** 3
    return {"what": what, "flops": flops, "seconds": timing["min_s"],
            "gflops": flops / timing["min_s"] / 1e9}


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else math.nan


# ---------------------------------------------------------------------------------------
# inputs shared by the sides


def save_inputs(folder: Path, **arrays: np.ndarray) -> Path:
    """Write the arrays a measurement child needs (content, image, style_feats, ys, xs)."""
    path = Path(folder) / "inputs.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_inputs(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------------
# the measurement child


def _sync_for(engine) -> Callable[[], None] | None:
    if getattr(engine, "device", "cpu") == "cuda":
        return engine.xp.cuda.get_current_stream().synchronize
    return None


def upstream_grads(height: int, width: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Dense random upstream gradients for the layers the engine's VJP takes."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in FEATURE_LAYERS:
        layer = LAYER_BY_NAME[name]
        out[name] = rng.standard_normal(map_shape(height, width, layer.channels, layer.pools),
                                        dtype=np.float32)
    return out


def _time_objective(result: dict[str, Any], call: Callable[[], float], repeat: int,
                    sync: Callable[[], None] | None) -> None:
    """Time ``call`` (one evaluation, returning the loss) into ``result``: its timing, the
    last loss, the peak RSS after the setup and after the calls."""
    result["setup_rss"] = peak_rss()
    loss = []
    result["objective"] = time_calls(lambda: loss.append(call()), repeat, sync=sync)
    result["loss"] = loss[-1]
    result["peak_rss"] = peak_rss()


def measure_ours(inputs: dict[str, np.ndarray], preset: str, content_weight: float,
                 repeat: int, threads: int | None, device: str = "cpu",
                 vgg: bool = False) -> dict[str, Any]:
    """Time our objective (ONNX Runtime forward, losses, VJP) on fixed inputs; optionally
    the VGG part alone (forward + VJP with dense upstream gradients)."""
    engine = VGGFeatures(device=device, threads=threads)
    xp = engine.xp
    sync = _sync_for(engine)
    content, image = inputs["content"], inputs["image"]
    ys, xs = inputs["ys"], inputs["xs"]
    target = losses.style_target(xp.asarray(inputs["style_feats"]))
    objective = Objective(engine, xp.asarray(content), target, preset, content_weight, len(ys))
    objective.set_locations(ys, xs)
    image_dev = xp.asarray(image)
    result: dict[str, Any] = {"side": "ours", "device": device}
    _time_objective(result, lambda: objective(image_dev)[0], repeat, sync)
    if vgg:
        height, width = image.shape[:2]
        grads = {k: xp.asarray(v) for k, v in upstream_grads(height, width).items()}

        def step():
            engine.forward(image_dev)
            return engine.backward(grads)

        result["vgg"] = time_calls(step, repeat, sync=sync)
        result["peak_rss_vgg"] = peak_rss()
    return result


def measure_torch(inputs: dict[str, np.ndarray], preset: str, content_weight: float,
                  repeat: int, threads: int | None, device: str = "cpu",
                  vgg: bool = False) -> dict[str, Any]:
    """The same as ``measure_ours`` for the torch-autograd side (float32)."""
    import torch

    from .torch_objective import TorchObjective, load_torch_vgg

    if threads:
        torch.set_num_threads(threads)
    torch_device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if torch_device == "cuda" else None
    net = load_torch_vgg(torch.float32, torch_device)
    ys, xs = inputs["ys"], inputs["xs"]
    objective = TorchObjective(net, inputs["content"], inputs["style_feats"], preset,
                               content_weight, len(ys))
    objective.set_locations(ys, xs)
    image = inputs["image"]
    result: dict[str, Any] = {"side": "torch", "device": torch_device,
                              "torch_threads": torch.get_num_threads()}
    _time_objective(result, lambda: objective(image)[0], repeat, sync)
    if vgg:
        height, width = image.shape[:2]
        grads = [torch.from_numpy(g).to(torch_device)
                 for g in upstream_grads(height, width).values()]
        x0 = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])).to(torch_device)

        def step():
            x = x0.detach().requires_grad_(True)
            maps = net(x)
            (grad,) = torch.autograd.grad([maps[n] for n in FEATURE_LAYERS], [x], grads)
            return grad

        result["vgg"] = time_calls(step, repeat, sync=sync)
        result["peak_rss_vgg"] = peak_rss()
    return result


CHILD_MARK = "RESULT "


def child_main(argument: str) -> None:
    """Entry point of a measurement child: ``argument`` is the JSON of ``run_child``'s
    parameters; prints one RESULT line of JSON."""
    params = json.loads(argument)
    side = params.pop("side")
    if side == "peak":
        result = matmul_peak(params["repeat"], device=params["device"])
        result["peak_rss"] = peak_rss()
    else:
        inputs = load_inputs(params.pop("inputs"))
        measure = measure_ours if side == "ours" else measure_torch
        result = measure(inputs, **params)
    print(CHILD_MARK + json.dumps(result), flush=True)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_child(side: str, inputs: Path | None, preset: str = DEFAULT_PRESET,
              content_weight: float = 1.0, repeat: int = 3, threads: int | None = None,
              device: str = "cpu", vgg: bool = False) -> dict[str, Any]:
    """Measure one side ("ours", "torch", or "peak": the matmul peak) in a fresh Python
    process, so that its peak memory is its own; see child_main. With ``threads``, the
    child's BLAS and OpenMP pools (numpy's matmuls in the losses, torch) get that many
    threads too, like ONNX Runtime and torch's intra-op pool."""
    if side == "peak":
        params = {"side": side, "repeat": repeat, "device": device}
    else:
        params = {"side": side, "inputs": str(inputs), "preset": preset,
                  "content_weight": content_weight, "repeat": repeat, "threads": threads,
                  "device": device, "vgg": vgg}
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    code = "import sys; from ostransfer.research.measure import child_main; child_main(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(params)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(CHILD_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise RuntimeError(f"the {side} measurement process failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(CHILD_MARK):])


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="ostransfer-research-")
