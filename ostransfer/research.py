"""Shared tools of the research commands (``compare``, ``score``, ``bench``).

- host and version information, so that results from different machines can be compared;
- FLOP counts of one evaluation (VGG16 convolutions, the losses' large products);
- timing helpers and a measured matmul peak;
- the measurement child: one side of an evaluation (``ours``: ONNX Runtime + hand-written
  gradients; ``torch``: torch autograd, see ``ostransfer.compare``) run in a process of its
  own, so that its peak resident memory (VmHWM) is its own;
- a PNG line chart (matplotlib when installed, else Pillow's ImageDraw).

Nothing here imports torch: the torch side is loaded only inside a measurement child or by
``ostransfer.compare``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .network import LAYERS

MB = 1024 * 1024


# ---------------------------------------------------------------------------------------
# host


def torch_available() -> bool:
    """True when torch can be imported (checked without importing it)."""
    return find_spec("torch") is not None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def host_info(device: str | None = None) -> dict[str, Any]:
    """Where a measurement ran: platform, CPU, cores, memory, load, library versions."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                                if f in flags]
                info["virtualised"] = "hypervisor" in flags
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    try:
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    import onnxruntime

    info["versions"] = {name: _version(name) for name in
                        ("ostransfer", "numpy", "scipy", "onnxruntime", "onnxruntime-gpu",
                         "torch", "cupy-cuda13x", "cupy-cuda12x")
                        if _version(name) is not None}
    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    if device is not None:
        info["device"] = device
    if device == "cuda":
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            name = props["name"]
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - informational only
            pass
    return info


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM) in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------------------
# FLOPs


def conv_flops(height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of VGG16's 13 convolutions at (height, width).

    The VJP's input-gradient convolutions (transposed, Cout -> Cin) have the same count, so
    one forward + VJP is twice this. ReLU, pooling and the normalisation are left out."""
    total, cin = 0, 3
    for layer in LAYERS:
        total += 2 * cin * layer.channels * 9 * (height >> layer.pools) * (width >> layer.pools)
        cin = layer.channels
    return total


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


def _upstream_grads(height: int, width: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Dense random upstream gradients for the layers the engine's VJP takes."""
    from .features import map_shape
    from .network import FEATURE_LAYERS, LAYER_BY_NAME

    rng = np.random.default_rng(seed)
    out = {}
    for name in FEATURE_LAYERS:
        layer = LAYER_BY_NAME[name]
        out[name] = rng.standard_normal(map_shape(height, width, layer.channels, layer.pools),
                                        dtype=np.float32)
    return out


def measure_ours(inputs: dict[str, np.ndarray], preset: str, content_weight: float,
                 repeat: int, threads: int | None, device: str = "cpu",
                 vgg: bool = False) -> dict[str, Any]:
    """Time our objective (ONNX Runtime forward, losses, VJP) on fixed inputs; optionally
    the VGG part alone (forward + VJP with dense upstream gradients)."""
    from . import losses
    from .features import VGGFeatures
    from .objective import Objective

    engine = VGGFeatures(device=device, threads=threads)
    xp = engine.xp
    sync = _sync_for(engine)
    content, image = inputs["content"], inputs["image"]
    ys, xs = inputs["ys"], inputs["xs"]
    target = losses.style_target(xp.asarray(inputs["style_feats"]))
    objective = Objective(engine, xp.asarray(content), target, preset, content_weight, len(ys))
    objective.set_locations(ys, xs)
    image_dev = xp.asarray(image)
    setup_rss = peak_rss()
    result: dict[str, Any] = {"side": "ours", "device": device, "setup_rss": setup_rss}
    loss = []
    result["objective"] = time_calls(lambda: loss.append(objective(image_dev)[0]), repeat,
                                     sync=sync)
    result["loss"] = loss[-1]
    result["peak_rss"] = peak_rss()
    if vgg:
        height, width = image.shape[:2]
        grads = {k: xp.asarray(v) for k, v in _upstream_grads(height, width).items()}

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

    from .compare import TorchObjective, load_torch_vgg
    from .network import FEATURE_LAYERS

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
    setup_rss = peak_rss()
    result: dict[str, Any] = {"side": "torch", "device": torch_device, "setup_rss": setup_rss,
                              "torch_threads": torch.get_num_threads()}
    loss = []
    result["objective"] = time_calls(lambda: loss.append(objective(image)[0]), repeat,
                                     sync=sync)
    result["loss"] = loss[-1]
    result["peak_rss"] = peak_rss()
    if vgg:
        height, width = image.shape[:2]
        grads = [torch.from_numpy(g).to(torch_device)
                 for g in _upstream_grads(height, width).values()]
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


def run_child(side: str, inputs: Path | None, preset: str = "paper",
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
    code = "import sys; from ostransfer.research import child_main; child_main(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(params)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(CHILD_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise RuntimeError(f"the {side} measurement process failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(CHILD_MARK):])


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="ostransfer-research-")


# ---------------------------------------------------------------------------------------
# output helpers


def rel_diff(a: float, b: float) -> float:
    """|a - b| / |b| (absolute difference when b is 0)."""
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def to_jsonable(value: Any) -> Any:
    """numpy scalars and arrays, Paths, NaN/inf -> plain JSON values (NaN and inf as None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2)


# ---------------------------------------------------------------------------------------
# PNG line chart


COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def line_chart(path: str | Path, series: dict[str, Sequence[float]], title: str = "",
               xlabel: str = "", ylabel: str = "", vlines: Iterable[float] = ()) -> Path:
    """Write a PNG line chart of one or more series (y values against 1, 2, 3, ...).

    Uses matplotlib when it is installed, else draws axes, ticks, polylines and a legend
    with Pillow. ``vlines``: x positions of dashed vertical markers (e.g. new sample sets)."""
    path = Path(path)
    vlines = list(vlines)
    if find_spec("matplotlib") is not None:
        try:
            return _line_chart_matplotlib(path, series, title, xlabel, ylabel, vlines)
        except Exception:  # noqa: BLE001 - a broken matplotlib backend: fall back to Pillow
            pass
    return _line_chart_pillow(path, series, title, xlabel, ylabel, vlines)


def _line_chart_matplotlib(path, series, title, xlabel, ylabel, vlines) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for (name, ys), colour in zip(series.items(), COLOURS):
        ax.plot(range(1, len(ys) + 1), ys, label=name, color=[c / 255 for c in colour])
    for x in vlines:
        ax.axvline(x, color="0.7", linestyle="--", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _line_chart_pillow(path, series, title, xlabel, ylabel, vlines) -> Path:
    from PIL import Image, ImageDraw

    width, height = 900, 560
    left, right, top, bottom = 90, 30, 50, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    n_max = max((len(ys) for ys in series.values()), default=1)
    y_lo, y_hi = (min(values), max(values)) if values else (0.0, 1.0)
    if y_hi <= y_lo:
        pad = abs(y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    pad = (y_hi - y_lo) * 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = 1.0, max(2.0, float(n_max))
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * pw, top + (y_hi - y) / (y_hi - y_lo) * ph)

    # grid, ticks and labels
    for y in _nice_ticks(y_lo, y_hi):
        _, yy = px(x_lo, y)
        draw.line([(left, yy), (left + pw, yy)], fill=(230, 230, 230))
        label = f"{y:.4g}"
        tw = draw.textlength(label, font=small)
        draw.text((left - 8 - tw, yy - 7), label, fill="black", font=small)
    for x in _nice_ticks(x_lo, x_hi):
        xx, _ = px(x, y_lo)
        draw.line([(xx, top + ph), (xx, top + ph + 5)], fill="black")
        label = f"{x:g}"
        tw = draw.textlength(label, font=small)
        draw.text((xx - tw / 2, top + ph + 8), label, fill="black", font=small)
    for x in vlines:
        xx, _ = px(x, y_lo)
        for y0 in range(top, top + ph, 10):
            draw.line([(xx, y0), (xx, min(y0 + 5, top + ph))], fill=(170, 170, 170))
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    # series
    for (name, ys), colour in zip(series.items(), COLOURS):
        points = [px(i + 1, v) for i, v in enumerate(ys) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2, joint="curve")
        elif points:
            x, y = points[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    # titles
    tw = draw.textlength(title, font=font)
    draw.text(((width - tw) / 2, 15), title, fill="black", font=font)
    tw = draw.textlength(xlabel, font=small)
    draw.text((left + (pw - tw) / 2, height - 30), xlabel, fill="black", font=small)
    if ylabel:
        label = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4, 18), "white")
        ImageDraw.Draw(label).text((2, 1), ylabel, fill="black", font=small)
        label = label.rotate(90, expand=True)
        image.paste(label, (8, top + (ph - label.size[1]) // 2))
    # legend
    lx, ly = left + pw - 10, top + 10
    names = list(series)
    box_w = max((draw.textlength(n, font=small) for n in names), default=0) + 46
    draw.rectangle([lx - box_w, ly, lx, ly + 22 * len(names) + 6], fill="white", outline=(180, 180, 180))
    for i, (name, colour) in enumerate(zip(names, COLOURS)):
        y = ly + 14 + 22 * i
        draw.line([(lx - box_w + 8, y), (lx - box_w + 34, y)], fill=colour, width=3)
        draw.text((lx - box_w + 40, y - 8), name, fill="black", font=small)
    image.save(path, format="PNG")
    return path
