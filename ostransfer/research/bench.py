"""``ostransfer bench``: evaluations per second and memory per image size, against torch.

For each size (square images made from the shipped sample photos) one fresh objective
(N output samples, M style samples) is timed: forward + losses + VJP, the unit of cost of
an optimisation. Each side runs in a process of its own, so that its peak resident memory
(VmHWM) is its own: ours (ONNX Runtime + hand-written gradients) and, when torch is
installed, torch autograd (float32, ``compare.TorchObjective``). The VGG part alone
(forward + input VJP with dense upstream gradients for the 11 feature layers) is timed too
and turned into achieved GFLOP/s (13 convolutions forward, 13 transposed backward), set
against a float32 matmul peak measured in the same run. The report says where it ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..arrays import resolve_device, to_numpy
from ..files import sample_image
from ..imaging.io import load_pil, resize, to_array
from ..method.objective import style_hypercolumns
from ..method.sampling import grid_locations
from ..method.schedule import initial_image
from ..nets.engine import VGGFeatures
from ..nets.vgg16 import conv_flops, hypercolumn_dim
from ..presets import DEFAULT_CONTENT_WEIGHT, DEFAULT_PRESET, check_preset
from .host import host_info, torch_available
from .measure import gflops, loss_flops, run_child, save_inputs, temporary_folder

DEFAULT_SIZES = (128, 256, 512, 1024)
SCHEMA = "ostransfer-bench/1"


def _side_row(result: dict[str, Any], vgg_flops: int, objective_flops: int,
              peak_gflops: float) -> dict[str, Any]:
    objective = result["objective"]
    row = {
        "evals_per_s": objective["per_s"],
        "objective_s": objective["median_s"],
        "objective_min_s": objective["min_s"],
        "objective_gflops": gflops(objective_flops, objective["median_s"]),
        "peak_rss_mb": result["peak_rss"] / 2 ** 20,
        "setup_rss_mb": result["setup_rss"] / 2 ** 20,
        "loss": result["loss"],
        "device": result["device"],
    }
    if "vgg" in result:
        vgg = result["vgg"]
        row.update(vgg_s=vgg["median_s"], vgg_min_s=vgg["min_s"],
                   vgg_gflops=gflops(vgg_flops, vgg["median_s"]),
                   vgg_peak_fraction=gflops(vgg_flops, vgg["median_s"]) / peak_gflops,
                   losses_s=max(0.0, objective["median_s"] - vgg["median_s"]))
    if "torch_threads" in result:
        row["threads"] = result["torch_threads"]
    return row


def _inputs(engine: VGGFeatures, images: tuple, size: int, preset: str, samples: int,
            style_samples: int, folder: Path) -> tuple[Path, int]:
    """The inputs of one size, written for the measurement children: (their file, N)."""
    content, style = (to_array(resize(image, (size, size))) for image in images)
    rng = np.random.default_rng(0)
    style_feats = style_hypercolumns(engine, engine.xp.asarray(style), preset, style_samples, rng)
    ys, xs = grid_locations(size, size, samples, rng)
    image = initial_image(content, style.reshape(-1, 3).mean(axis=0), None, last=False)
    path = save_inputs(folder, content=content, image=image,
                       style_feats=np.array(to_numpy(style_feats), dtype=np.float32), ys=ys, xs=xs)
    return path, len(ys)


def run_bench(sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = 3, preset: str = DEFAULT_PRESET,
              samples: int = 1024, style_samples: int = 5000, with_torch: bool | None = None,
              threads: int | None = None, device: str = "cpu",
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure; returns {"schema", "host", "settings", "peak", "results": [per size]}."""
    say = log or (lambda message: None)
    check_preset(preset)
    if not sizes or any(not 16 <= s <= 8192 for s in sizes):
        raise ValueError(f"sizes must be between 16 and 8192 px, got {list(sizes)}")
    if repeat < 1 or samples < 1 or style_samples < 1:
        raise ValueError("repeat, samples and style samples must be at least 1")
    device = resolve_device(device)
    if with_torch is None:
        with_torch = torch_available()
    elif with_torch and not torch_available():
        raise ValueError("torch is not installed: pip install 'ostransfer[compare]', or pass --no-torch")
    threads = threads or len(os.sched_getaffinity(0))
    weight = DEFAULT_CONTENT_WEIGHT[preset]

    host = host_info(device)
    say("measuring the matmul peak")
    peak = run_child("peak", None, repeat=repeat, threads=threads, device=device)
    peak["threads"] = threads
    engine = VGGFeatures(device=device, threads=threads)
    images = (load_pil(sample_image("content_chelsea.jpg")),
              load_pil(sample_image("style_starry_night.jpg")))
    results = []
    with temporary_folder() as folder:
        for size in sizes:
            inputs, n = _inputs(engine, images, size, preset, samples, style_samples, Path(folder))
            vgg_flops = 2 * conv_flops(size, size)
            objective_flops = vgg_flops + loss_flops(n, style_samples, hypercolumn_dim(preset))
            row: dict[str, Any] = {"size": size, "width": size, "height": size, "samples": n,
                                   "vgg_gflop": vgg_flops / 1e9,
                                   "objective_gflop": objective_flops / 1e9, "torch": None}
            for side in ("ours", "torch") if with_torch else ("ours",):
                say(f"{size} px: {side}")
                measured = run_child(side, inputs, preset, weight, repeat, threads, device,
                                     vgg=True)
                row[side] = _side_row(measured, vgg_flops, objective_flops, peak["gflops"])
            if with_torch:
                row["vgg_speedup"] = row["torch"]["vgg_s"] / row["ours"]["vgg_s"]
                row["objective_speedup"] = row["torch"]["objective_s"] / row["ours"]["objective_s"]
                row["memory_ratio"] = row["torch"]["peak_rss_mb"] / row["ours"]["peak_rss_mb"]
            results.append(row)
    return {
        "schema": SCHEMA,
        "host": host,
        "settings": {"sizes": list(sizes), "repeat": repeat, "preset": preset,
                     "content_weight": weight, "samples": samples,
                     "style_samples": style_samples, "threads": threads, "device": device,
                     "torch": bool(with_torch), "dim": hypercolumn_dim(preset),
                     "timing": "median of `repeat` calls after one warm-up, each side in a "
                               "fresh process; memory is that process's peak RSS (VmHWM)",
                     "flops": "VGG: 13 convs forward + 13 transposed (input VJP); objective: "
                              "VGG + 2NMD + 4N^2 D + 4ND^2 (the losses' large products)"},
        "peak": peak,
        "results": results,
    }
