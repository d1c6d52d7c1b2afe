"""``ostransfer compare``: our objective (ONNX Runtime VGG16 + hand-written gradients) against
torch autograd on the same image and the same sample sets.

This module imports torch: it is loaded only by the ``compare`` command, never by the rest of
the package. Install the extra: ``pip install 'ostransfer[compare]'``.

Two torch objectives are used: ``torch_reference.objective`` in float64, an independent
implementation of docs/algorithm.md, as the yardstick of the agreement figures (each term's
value, the image gradient's relative error and cosine similarity); and
``torch_objective.TorchObjective`` in float32, what is timed and what runs the short
optimisation beside ours.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..arrays import to_numpy
from ..imaging.io import load_pil, resize, scaled_size, to_array
from ..method import losses
from ..method.lbfgs import lbfgs
from ..method.objective import Objective, style_hypercolumns
from ..method.sampling import grid_locations
from ..method.schedule import initial_image
from ..nets.engine import VGGFeatures
from ..presets import DEFAULT_COLOR_WEIGHT, DEFAULT_CONTENT_WEIGHT, DEFAULT_PRESET, check_preset
from . import torch_reference as tr
from .charts import line_chart
from .host import host_info
from .measure import run_child, save_inputs, summary, temporary_folder, time_calls
from .report import rel_diff
from .torch_objective import SameSamples, TorchObjective, load_torch_vgg

TERMS = ("content", "moment", "remd", "palette", "color", "total")


@dataclass(frozen=True)
class CompareSettings:
    """What ``compare`` measures (see the command's help); ``validated`` resolves the
    defaults (the preset's content weight, the usable cores)."""

    size: int = 128
    preset: str = DEFAULT_PRESET
    content_weight: float | None = None
    color_weight: float | None = None  # None: the preset's default (presets.DEFAULT_COLOR_WEIGHT)
    samples: int = 1024
    style_samples: int = 5000
    evaluations: int = 30
    per_round: int = 10
    repeat: int = 3
    seed: int = 0
    threads: int | None = None
    memory: bool = True
    plot: str | Path | None = None
    run_dtype: str = "float32"

    def validated(self) -> "CompareSettings":
        check_preset(self.preset)
        if not 16 <= self.size <= 4096:
            raise ValueError(f"size must be between 16 and 4096 px, got {self.size}")
        if min(self.samples, self.style_samples, self.per_round, self.repeat) < 1 \
                or self.evaluations < 0:
            raise ValueError("samples, style samples, per-round and repeat must be at least 1, "
                             "evaluations at least 0")
        weight = float(self.content_weight) if self.content_weight is not None \
            else DEFAULT_CONTENT_WEIGHT[self.preset]
        if not weight > 0:
            raise ValueError(f"content weight must be positive, got {weight}")
        color = DEFAULT_COLOR_WEIGHT[self.preset] if self.color_weight is None \
            else float(self.color_weight)
        if not color >= 0:
            raise ValueError(f"color weight must be 0 or more, got {color}")
        if self.run_dtype not in ("float32", "float64"):
            raise ValueError(f"run dtype must be float32 or float64, got {self.run_dtype!r}")
        return dataclasses.replace(self, content_weight=weight, color_weight=color,
                                   threads=self.threads or len(os.sched_getaffinity(0)))


# ---------------------------------------------------------------------------------------
# agreement figures


def gradient_agreement(grad: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Relative L2 error, cosine similarity and max-abs error (relative to the reference's
    largest entry) of an image gradient against a reference gradient."""
    g = np.asarray(grad, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    norm_r, norm_g = np.linalg.norm(r), np.linalg.norm(g)
    return {
        "rel_error": float(np.linalg.norm(g - r) / norm_r) if norm_r > 0 else float(np.linalg.norm(g)),
        "cosine": float(g @ r / (norm_g * norm_r)) if norm_g > 0 and norm_r > 0 else float("nan"),
        "max_abs_error": float(np.max(np.abs(g - r))) if g.size else 0.0,
        "max_abs_rel": float(np.max(np.abs(g - r)) / np.max(np.abs(r))) if np.any(r) else 0.0,
        "norm": float(norm_g),
    }


# Error floors of the ratios our error / torch float32's error (see ``agreement``)
FLOAT32_EPS = 2.0 ** -23
TERM_ERROR_FLOOR_ULPS = 2
GRADIENT_ERROR_FLOOR = 4 * FLOAT32_EPS


def term_error_floor(reference: float) -> float:
    """Two float32 ulps of a term's value, relative to it: twice the spacing of float32
    numbers at |reference|, over |reference| (between 2^-23 and 2^-22). At reference 0
    (where errors are absolute) twice the smallest float32 subnormal, i.e. no floor."""
    spacing = TERM_ERROR_FLOOR_ULPS * float(np.spacing(np.float32(abs(reference))))
    return spacing / abs(reference) if reference != 0 else spacing


def error_ratio(ours: float, torch_f32: float, floor: float) -> float:
    """max(ours, floor) / max(torch_f32, floor): our error over torch float32's, neither
    counted below the floor (two errors under it are both float32 rounding: ratio 1)."""
    return max(ours, floor) / max(torch_f32, floor)


def _timed(objective: Callable, image: np.ndarray) -> tuple[float, np.ndarray, dict, float]:
    """(value, host gradient float64, terms with the total, seconds) of one evaluation."""
    t0 = time.perf_counter()
    value, grad, terms = objective(image)
    seconds = time.perf_counter() - t0
    # the engine's buffer: copied before the next call
    return value, to_numpy(grad).astype(np.float64), dict(terms, total=value), seconds


def agreement(point: str, image: np.ndarray, ours: Callable, torch32: Callable,
              reference: Callable) -> dict[str, Any]:
    """Each term's value and the gradient's agreement of ours and torch float32 against the
    float64 reference, at one image and the current sample set.

    Errors are against the float64 reference: |value - reference| / |reference| for each
    term and the total (``rel_diff``), the relative L2 error for the image gradient. Each
    comes with ``ratio_to_torch_f32`` = ``error_ratio(ours, torch f32, floor)``: our error
    over torch float32's, both raised to a floor first, because an error under the floor is
    float32 rounding and the ratio of two such errors is luck (torch's can even be 0 when
    its float32 value happens to round to the float64 one). The floors: two float32 ulps of
    the term's value (``term_error_floor``: a float32 result is at best half an ulp off, and
    the content term, a sum of N^2 entries that largely cancel, is up to 1.5 to 2.7 ulps off
    in float32 for either implementation) and 4 float32 epsilons (4 * 2^-23 = 4.8e-7) for
    the gradient, the relative error that float32 backpropagation through VGG16 alone has
    at a point without kinks (2e-7 to 3e-7, for ONNX Runtime and torch alike)."""
    _, grad, terms, ours_s = _timed(ours, image)
    _, grad32, terms32, torch32_s = _timed(torch32, image)
    _, grad64, terms64, reference_s = _timed(reference, image)
    rows = {}
    for name in TERMS:
        ours_err = rel_diff(terms[name], terms64[name])
        torch_err = rel_diff(terms32[name], terms64[name])
        floor = term_error_floor(terms64[name])
        rows[name] = {"ours": terms[name], "torch_f32": terms32[name], "torch_f64": terms64[name],
                      "ours_rel_diff": ours_err, "torch_f32_rel_diff": torch_err,
                      "floor": floor, "ratio_to_torch_f32": error_ratio(ours_err, torch_err, floor)}
    ours_grad, torch_grad = gradient_agreement(grad, grad64), gradient_agreement(grad32, grad64)
    return {
        "point": point,
        "terms": rows,
        "gradient": ours_grad,
        "gradient_torch_f32": torch_grad,
        "gradient_floor": GRADIENT_ERROR_FLOOR,
        "error_ratio_to_torch_f32": error_ratio(ours_grad["rel_error"], torch_grad["rel_error"],
                                                GRADIENT_ERROR_FLOOR),
        "seconds": {"ours": ours_s, "torch_f32": torch32_s, "torch_f64_reference": reference_s},
    }


def max_error_ratio(points: list[dict[str, Any]]) -> float:
    """The largest ratio to torch float32 (floors applied) over the points' terms and
    gradients."""
    return max(max([p["error_ratio_to_torch_f32"]]
                   + [t["ratio_to_torch_f32"] for t in p["terms"].values()]) for p in points)


class Sides:
    """Ours, torch float32 and the float64 reference on one content image, one style sample
    set and (``use_samples``) one output/content sample set."""

    def __init__(self, content: np.ndarray, style_feats: np.ndarray, s: CompareSettings):
        self.content, self.style_feats, self.settings = content, style_feats, s
        self.vgg64 = load_torch_vgg(torch.float64)
        self.ours = Objective(_engine(s.threads), content, losses.style_target(style_feats),
                              s.preset, s.content_weight, s.samples,
                              color_weight=s.color_weight)
        self.torch32 = TorchObjective(load_torch_vgg(torch.float32), content, style_feats,
                                      s.preset, s.content_weight, s.samples, s.color_weight)
        self._style64 = style_feats.astype(np.float64)
        self._ys = self._xs = self._content64 = None

    def use_samples(self, ys: np.ndarray, xs: np.ndarray) -> None:
        self.ours.set_locations(ys, xs)
        self.torch32.set_locations(ys, xs)
        self._ys, self._xs = ys, xs
        self._content64 = tr.image_hypercolumns(self.vgg64, self.content.astype(np.float64),
                                                ys, xs, self.settings.preset)

    def reference(self, image: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        s = self.settings
        return tr.objective(self.vgg64, np.asarray(image, dtype=np.float64), self._content64,
                            self._style64, self._ys, self._xs, s.preset, s.content_weight,
                            s.color_weight)

    def agreement(self, point: str, image: np.ndarray) -> dict[str, Any]:
        return agreement(point, image, self.ours, self.torch32, self.reference)


# ---------------------------------------------------------------------------------------
# the command's work


def run_compare(content: Any, style: Any, settings: CompareSettings = CompareSettings(),
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compare our objective with torch autograd; returns the report (see ``compare`` help).

    content, style: paths or PIL images. With ``settings.memory``, times and peak memory
    come from one fresh process per side; otherwise the times are measured here.
    ``evaluations`` > 0 runs L-BFGS-B with both from the same start on the same sample sets
    (``per_round`` evaluations per set; the torch side in ``run_dtype``) and, with ``plot``,
    writes their loss curves as a PNG.

    The two L-BFGS-B trajectories agree at first and then drift apart: the gradients differ
    by float32 rounding (more near kinks: the L1 terms' signs, ReLU and max-pool ties in
    saturated regions, arg-min ties), and L-BFGS-B's line searches and bound projections
    amplify small differences. ``first_divergence`` says when the curves first differ by
    more than 1e-3 (relative); a float64 torch run (``run_dtype="float64"``) drifts too,
    only later."""
    s = settings.validated()
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        return _compare(content, style, s, log or (lambda message: None))
    finally:
        torch.set_num_threads(before)


def _compare(content: Any, style: Any, s: CompareSettings,
             say: Callable[[str], None]) -> dict[str, Any]:
    content_pil, style_pil = load_pil(content), load_pil(style)
    content_arr = to_array(resize(content_pil, scaled_size(content_pil.size, s.size)))
    style_arr = to_array(resize(style_pil, scaled_size(style_pil.size, s.size)))
    height, width = content_arr.shape[:2]
    if min(height, width) < 16:
        raise ValueError(f"the content at {s.size} px is {width}x{height}: VGG16 needs 16 px a side")

    say("loading VGG16 (ONNX Runtime, torch float32 and float64)")
    rng = np.random.default_rng(s.seed)
    style_feats = np.array(style_hypercolumns(_engine(s.threads), style_arr, s.preset,
                                              s.style_samples, rng), dtype=np.float32)
    ys, xs = grid_locations(height, width, s.samples, rng)
    start = initial_image(content_arr, style_arr.reshape(-1, 3).mean(axis=0), None, last=False)
    sides = Sides(content_arr, style_feats, s)
    sides.use_samples(ys, xs)
    say("agreement at the start image")
    points = [sides.agreement("start", start)]
    timing, memory_report = _timing(sides, start, (ys, xs), s, say)
    timing["torch_f64_reference"] = summary([points[0]["seconds"]["torch_f64_reference"]])
    run = None
    if s.evaluations > 0:
        run, final = _optimisation(sides, start, s, say)
        say("agreement after the optimisation (our final image, the first sample set)")
        sides.use_samples(ys, xs)
        points.append(sides.agreement("after run", final))
    return {
        "settings": {"content": str(content) if isinstance(content, (str, Path)) else None,
                     "style": str(style) if isinstance(style, (str, Path)) else None,
                     "size": s.size, "width": width, "height": height, "preset": s.preset,
                     "content_weight": s.content_weight, "color_weight": s.color_weight,
                     "samples": len(ys),
                     "style_samples": s.style_samples, "seed": s.seed, "repeat": s.repeat,
                     "threads": s.threads, "reference": "torch_reference.objective, float64"},
        "agreement": points,
        "max_gradient_rel_error": max(p["gradient"]["rel_error"] for p in points),
        "max_error_ratio_to_torch_f32": max_error_ratio(points),
        "min_gradient_cosine": min(p["gradient"]["cosine"] for p in points),
        "timing": timing,
        "memory": memory_report,
        "run": run,
        "host": host_info("cpu"),
    }


def _timing(sides: Sides, start: np.ndarray, samples: tuple[np.ndarray, np.ndarray],
            s: CompareSettings, say: Callable[[str], None]) -> tuple[dict, dict | None]:
    """Time per evaluation of both sides (and peak memory, each in a fresh process)."""
    if not s.memory:
        say("timing")
        timing = {"source": "in process", "ours": time_calls(lambda: sides.ours(start), s.repeat),
                  "torch_f32": time_calls(lambda: sides.torch32(start), s.repeat)}
        memory = None
    else:
        say("timing and peak memory, one process per side")
        with temporary_folder() as folder:
            inputs = save_inputs(Path(folder), content=sides.content, image=start,
                                 style_feats=sides.style_feats, ys=samples[0], xs=samples[1])
            measured = {side: run_child(side, inputs, s.preset, s.content_weight, s.repeat,
                                        s.threads) for side in ("ours", "torch")}
        timing = {"source": "one fresh process per side",
                  "ours": measured["ours"]["objective"],
                  "torch_f32": measured["torch"]["objective"]}
        memory = {name: {"peak_rss_mb": r["peak_rss"] / 2 ** 20,
                         "setup_rss_mb": r["setup_rss"] / 2 ** 20}
                  for name, r in (("ours", measured["ours"]), ("torch_f32", measured["torch"]))}
    timing["speedup_vs_torch_f32"] = timing["torch_f32"]["median_s"] / timing["ours"]["median_s"]
    return timing, memory


def _optimisation(sides: Sides, start: np.ndarray, s: CompareSettings,
                  say: Callable[[str], None]) -> tuple[dict[str, Any], np.ndarray]:
    """L-BFGS-B with both objectives from the same start on the same sample sets: (the
    report, our final image)."""
    say(f"optimisation: {s.evaluations} evaluations each, {s.per_round} per sample set")
    height, width = start.shape[:2]
    run: dict[str, Any] = {"evaluations": s.evaluations, "per_round": s.per_round,
                           "seed": s.seed + 1, "torch_dtype": s.run_dtype,
                           "sample_set_starts": list(range(1, s.evaluations + 1, s.per_round))}
    theirs = sides.torch32 if s.run_dtype == "float32" else TorchObjective(
        sides.vgg64, sides.content, sides.style_feats, s.preset, s.content_weight, s.samples,
        s.color_weight)
    finals = {}
    for name, objective in (("ours", sides.ours), ("torch", theirs)):
        curve: list[float] = []
        t0 = time.perf_counter()
        finals[name] = lbfgs(SameSamples(objective, height, width, s.samples), start,
                             s.evaluations, s.per_round, np.random.default_rng(s.seed + 1),
                             callback=lambda step, curve=curve: curve.append(step.loss))
        seconds = time.perf_counter() - t0
        run[name] = {"loss": curve, "seconds": seconds,
                     "seconds_per_evaluation": seconds / max(1, len(curve))}
    run["final_loss_rel_diff"] = rel_diff(run["ours"]["loss"][-1], run["torch"]["loss"][-1])
    run["final_image_mean_abs_diff"] = float(np.mean(np.abs(finals["ours"] - finals["torch"])))
    run["first_divergence"] = _first_divergence(run["ours"]["loss"], run["torch"]["loss"])
    if s.plot is not None:
        run["plot"] = str(line_chart(
            s.plot, {"ours (ONNX Runtime + hand-written VJP)": run["ours"]["loss"],
                     f"torch autograd ({s.run_dtype})": run["torch"]["loss"]},
            title=f"L-BFGS-B loss, {s.preset} preset, {width}x{height} px, a = {s.content_weight:g}",
            xlabel="function evaluation (dashed: new sample set)", ylabel="loss",
            vlines=[start_ - 0.5 for start_ in run["sample_set_starts"][1:]]))
    return run, finals["ours"]


def _first_divergence(a: list[float], b: list[float], tol: float = 1e-3) -> int | None:
    """The first evaluation (1-based) where the two loss curves differ by more than tol
    (relative), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if rel_diff(x, y) > tol:
            return i + 1
    return None


@lru_cache(maxsize=2)
def _engine(threads: int) -> VGGFeatures:
    return VGGFeatures(device="cpu", threads=threads)
