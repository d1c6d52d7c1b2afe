"""``ostransfer compare``: our objective (ONNX Runtime VGG16 + hand-written gradients) against
torch autograd on the same image and the same sample sets.

This module imports torch: it is loaded only by the ``compare`` command and by the torch
side of ``bench`` (in a measurement child), never by the rest of the package. Install the
extra: ``pip install 'ostransfer[compare]'``.

Two torch objectives are used:

- ``ostransfer.torch_reference.objective`` in float64, an independent implementation of
  SPEC, as the yardstick of the agreement figures (each term's value, the image gradient's
  relative error and cosine similarity);
- ``TorchObjective`` in float32, the same losses composed from torch_reference's functions
  with what is constant per scale (style mean and covariance) and per sample set (the
  content self-similarity) computed once, as an autodiff implementation would be written
  for speed. It is what is timed and what runs the short optimisation beside ours.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import losses
from . import torch_reference as tr
from .network import PRESETS
from .research import (host_info, line_chart, rel_diff, run_child, save_inputs, summary,
                       temporary_folder, time_calls)
from .sampling import grid_locations

TERMS = ("content", "moment", "remd", "palette", "total")


@lru_cache(maxsize=1)
def _weights():
    from .models import fetch_weights
    from .weights import load_vgg16_weights

    return load_vgg16_weights(fetch_weights())


@lru_cache(maxsize=4)
def load_torch_vgg(dtype: torch.dtype = torch.float32, device: str = "cpu") -> tr.TorchVGG16:
    """The torch VGG16 with the package's weights (the same file the ONNX model is made of)."""
    return tr.TorchVGG16(_weights(), dtype=dtype).to(device)


class TorchLosses:
    """SPEC's loss terms in torch autograd (float32 or float64), with what ours precompute
    precomputed here too: the style mean and covariance once, the content self-similarity
    once per sample set (``set_content``). style_feats: S (M, D) on ``device``."""

    def __init__(self, style_feats: Any, preset: str, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu"):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.preset = preset
        self.style = torch.as_tensor(np.asarray(style_feats), dtype=dtype, device=device)
        with torch.no_grad():
            self.style_mean = self.style.mean(dim=0)
            centred = self.style - self.style_mean
            self.style_cov = centred.T @ centred / self.style.shape[0]
        self.content_sim: torch.Tensor | None = None

    @staticmethod
    def _self_similarity(a: torch.Tensor) -> torch.Tensor:
        dist = tr.cosine_distance_matrix(a, a)
        return dist / dist.sum(dim=0, keepdim=True)

    def set_content(self, content_feats: torch.Tensor) -> None:
        """Fix the content hypercolumns C (N, D) of the current sample set."""
        with torch.no_grad():
            self.content_sim = self._self_similarity(content_feats)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms of output hypercolumns x (N, D), as tensors."""
        if self.content_sim is None:
            raise RuntimeError("call set_content() before evaluating")
        n, d = x.shape
        diff = (self._self_similarity(x) - self.content_sim).abs().sum()
        content = diff / (n * n) if self.preset == "paper" else diff / n
        mu = x.mean(dim=0)
        centred = x - mu
        cov = centred.T @ centred / n
        moment = (mu - self.style_mean).abs().sum() / d + (cov - self.style_cov).abs().sum() / (d * d)
        return {"content": content, "moment": moment, "remd": tr.remd_loss(x, self.style),
                "palette": tr.palette_loss(x, self.style, self.preset)}


class TorchObjective:
    """SPEC's objective in torch autograd, shaped like ``ostransfer.objective.Objective``:
    ``set_locations(ys, xs)`` / ``resample(rng)`` fix a sample set, ``__call__(image)``
    returns (loss, dloss/dimage (H, W, 3) numpy, terms). Works with ``optimize.lbfgs``.

    vgg: a ``TorchVGG16`` (its dtype and device are used); content: (H, W, 3) in [0, 1];
    style_feats: S (M, D), e.g. from ``objective.style_hypercolumns``.
    """

    def __init__(self, vgg: tr.TorchVGG16, content: np.ndarray, style_feats: Any, preset: str,
                 content_weight: float, samples: int = 1024):
        if not content_weight > 0:
            raise ValueError("content_weight must be positive")
        self.vgg, self.preset, self.content_weight = vgg, preset, float(content_weight)
        self.losses = TorchLosses(style_feats, preset, vgg.dtype, vgg.kernels[0].device)
        self.content = np.asarray(content)
        self.height, self.width = self.content.shape[:2]
        self.samples = samples
        self.ys = self.xs = None

    def set_locations(self, ys: np.ndarray, xs: np.ndarray) -> None:
        self.ys, self.xs = np.asarray(ys), np.asarray(xs)
        self.losses.set_content(
            tr.image_hypercolumns(self.vgg, self.content, self.ys, self.xs, self.preset))

    def resample(self, rng: np.random.Generator) -> None:
        self.set_locations(*grid_locations(self.height, self.width, self.samples, rng))

    def __call__(self, image: Any) -> tuple[float, np.ndarray, dict[str, float]]:
        if self.ys is None:
            raise RuntimeError("call resample() or set_locations() before evaluating")
        img = torch.tensor(np.asarray(image), dtype=self.vgg.dtype,
                           device=self.vgg.kernels[0].device, requires_grad=True)
        with torch.enable_grad():
            maps = self.vgg(img.permute(2, 0, 1).unsqueeze(0))
            x = tr.hypercolumns(img, maps, self.ys, self.xs, self.preset)
            terms = self.losses.terms(x)
            loss = tr.combine(terms, self.preset, self.content_weight)
            (grad,) = torch.autograd.grad(loss, img)
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(loss.detach())
        return values["total"], grad.detach().cpu().numpy(), values


class SameSamples:
    """Wraps an objective so that ``resample(rng)`` draws its sample set with
    ``sampling.grid_locations`` here: two wrapped objectives given identically seeded
    generators see identical sample sets, whatever their own ``resample`` does."""

    def __init__(self, objective: Any, height: int, width: int, samples: int):
        self.objective, self.height, self.width, self.samples = objective, height, width, samples

    def resample(self, rng: np.random.Generator) -> None:
        self.objective.set_locations(*grid_locations(self.height, self.width, self.samples, rng))

    def __call__(self, image: Any):
        return self.objective(image)


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


def _host(array) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)


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
    t0 = time.perf_counter()
    value, grad, terms = ours(image)
    ours_s = time.perf_counter() - t0
    grad = _host(grad).astype(np.float64)  # the engine's buffer: copy before the next call
    terms = dict(terms, total=value)
    t0 = time.perf_counter()
    _, grad32, terms32 = torch32(image)
    torch32_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, grad64, terms64 = reference(image)
    reference_s = time.perf_counter() - t0
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
        # float32's own floor: torch autograd in float32 has an error against float64 too
        # (L1 kinks such as the content term's |A^X - A^C| flip sign within rounding)
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


# ---------------------------------------------------------------------------------------
# the command's work


def run_compare(content: Any, style: Any, size: int = 128, preset: str = "paper",
                content_weight: float | None = None, samples: int = 1024,
                style_samples: int = 5000, evaluations: int = 30, per_round: int = 10,
                repeat: int = 3, seed: int = 0, threads: int | None = None,
                memory: bool = True, plot: str | Path | None = None,
                run_dtype: str = "float32", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compare our objective with torch autograd; returns the report (see ``compare`` help).

    content, style: paths or PIL images; size: long side of the output, px. With
    ``memory``, times and peak memory come from one fresh process per side; otherwise the
    times are measured here. ``evaluations`` > 0 runs L-BFGS-B with both from the same start
    on the same sample sets (``per_round`` evaluations per set; the torch side in
    ``run_dtype``, float32 or float64) and, with ``plot``, writes their loss curves as a PNG.

    The two L-BFGS-B trajectories agree at first and then drift apart: the gradients differ
    by float32 rounding (more near kinks: the L1 terms' signs, ReLU and max-pool ties in
    saturated regions, arg-min ties), and L-BFGS-B's line searches and bound projections
    amplify small differences. ``first_divergence`` says when the curves first differ by
    more than 1e-3 (relative); a float64 torch run (``run_dtype="float64"``) drifts too,
    only later."""
    from .api import DEFAULT_CONTENT_WEIGHT

    say = log or (lambda message: None)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not 16 <= size <= 4096:
        raise ValueError(f"size must be between 16 and 4096 px, got {size}")
    if samples < 1 or style_samples < 1 or per_round < 1 or repeat < 1 or evaluations < 0:
        raise ValueError("samples, style samples, per-round and repeat must be at least 1, "
                         "evaluations at least 0")
    weight = float(content_weight) if content_weight is not None else DEFAULT_CONTENT_WEIGHT[preset]
    if not weight > 0:
        raise ValueError(f"content weight must be positive, got {weight}")
    if run_dtype not in ("float32", "float64"):
        raise ValueError(f"run dtype must be float32 or float64, got {run_dtype!r}")
    threads = threads or len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _compare(content, style, size, preset, weight, samples, style_samples,
                        evaluations, per_round, repeat, seed, threads, memory, plot, run_dtype,
                        say)
    finally:
        torch.set_num_threads(before)


def _compare(content, style, size, preset, weight, samples, style_samples, evaluations,
             per_round, repeat, seed, threads, memory, plot, run_dtype, say) -> dict[str, Any]:
    from .images import load_pil, resize, scaled_size, to_array
    from .objective import Objective, style_hypercolumns
    from .optimize import lbfgs
    from .schedule import initial_image

    content_pil, style_pil = load_pil(content), load_pil(style)
    content_arr = to_array(resize(content_pil, scaled_size(content_pil.size, size)))
    style_arr = to_array(resize(style_pil, scaled_size(style_pil.size, size)))
    height, width = content_arr.shape[:2]
    if min(height, width) < 16:
        raise ValueError(f"the content at {size} px is {width}x{height}: VGG16 needs 16 px a side")

    say("loading VGG16 (ONNX Runtime, torch float32 and float64)")
    engine = _engine(threads)
    vgg32 = load_torch_vgg(torch.float32)
    vgg64 = load_torch_vgg(torch.float64)

    rng = np.random.default_rng(seed)
    style_feats = np.array(style_hypercolumns(engine, style_arr, preset, style_samples, rng),
                           dtype=np.float32)
    ys, xs = grid_locations(height, width, samples, rng)
    start = initial_image(content_arr, style_arr.reshape(-1, 3).mean(axis=0), None, last=False)

    ours = Objective(engine, content_arr, losses.style_target(style_feats), preset, weight, samples)
    theirs = TorchObjective(vgg32, content_arr, style_feats, preset, weight, samples)
    style64 = style_feats.astype(np.float64)
    state: dict[str, Any] = {}

    def use_samples(ys_: np.ndarray, xs_: np.ndarray) -> None:
        ours.set_locations(ys_, xs_)
        theirs.set_locations(ys_, xs_)
        state["ys"], state["xs"] = ys_, xs_
        state["content64"] = tr.image_hypercolumns(vgg64, content_arr.astype(np.float64),
                                                   ys_, xs_, preset)

    def reference(image: np.ndarray):
        return tr.objective(vgg64, np.asarray(image, dtype=np.float64), state["content64"],
                            style64, state["ys"], state["xs"], preset, weight)

    use_samples(ys, xs)
    say("agreement at the start image")
    points = [agreement("start", start, ours, theirs, reference)]

    # time and memory per evaluation
    if memory:
        say("timing and peak memory, one process per side")
        with temporary_folder() as folder:
            inputs = save_inputs(Path(folder), content=content_arr, image=start,
                                 style_feats=style_feats, ys=ys, xs=xs)
            sides = {side: run_child(side, inputs, preset, weight, repeat, threads)
                     for side in ("ours", "torch")}
        timing = {"source": "one fresh process per side",
                  "ours": sides["ours"]["objective"], "torch_f32": sides["torch"]["objective"]}
        memory_report = {name: {"peak_rss_mb": r["peak_rss"] / 2 ** 20,
                                "setup_rss_mb": r["setup_rss"] / 2 ** 20}
                         for name, r in (("ours", sides["ours"]), ("torch_f32", sides["torch"]))}
    else:
        say("timing")
        timing = {"source": "in process",
                  "ours": time_calls(lambda: ours(start), repeat),
                  "torch_f32": time_calls(lambda: theirs(start), repeat)}
        memory_report = None
    timing["torch_f64_reference"] = summary([points[0]["seconds"]["torch_f64_reference"]])
    timing["speedup_vs_torch_f32"] = timing["torch_f32"]["median_s"] / timing["ours"]["median_s"]

    run = None
    if evaluations > 0:
        say(f"optimisation: {evaluations} evaluations each, {per_round} per sample set")
        run = {"evaluations": evaluations, "per_round": per_round, "seed": seed + 1,
               "torch_dtype": run_dtype,
               "sample_set_starts": list(range(1, evaluations + 1, per_round))}
        run_torch = theirs if run_dtype == "float32" else TorchObjective(
            vgg64, content_arr, style_feats, preset, weight, samples)
        finals = {}
        for name, objective in (("ours", ours), ("torch", run_torch)):
            curve: list[float] = []
            t0 = time.perf_counter()
            final = lbfgs(SameSamples(objective, height, width, samples), start, evaluations,
                          per_round, np.random.default_rng(seed + 1),
                          callback=lambda step, curve=curve: curve.append(step.loss))
            seconds = time.perf_counter() - t0
            finals[name] = final
            run[name] = {"loss": curve, "seconds": seconds, "seconds_per_evaluation":
                         seconds / max(1, len(curve))}
        run["final_loss_rel_diff"] = rel_diff(run["ours"]["loss"][-1], run["torch"]["loss"][-1])
        run["final_image_mean_abs_diff"] = float(np.mean(np.abs(finals["ours"] - finals["torch"])))
        run["first_divergence"] = _first_divergence(run["ours"]["loss"], run["torch"]["loss"])
        if plot is not None:
            run["plot"] = str(line_chart(
                plot, {"ours (ONNX Runtime + hand-written VJP)": run["ours"]["loss"],
                       f"torch autograd ({run_dtype})": run["torch"]["loss"]},
                title=f"L-BFGS-B loss, {preset} preset, {width}x{height} px, a = {weight:g}",
                xlabel="function evaluation (dashed: new sample set)", ylabel="loss",
                vlines=[s - 0.5 for s in run["sample_set_starts"][1:]]))
        say("agreement after the optimisation (our final image, the first sample set)")
        use_samples(ys, xs)
        points.append(agreement("after run", finals["ours"], ours, theirs, reference))

    return {
        "settings": {"content": str(content) if isinstance(content, (str, Path)) else None,
                     "style": str(style) if isinstance(style, (str, Path)) else None,
                     "size": size, "width": width, "height": height, "preset": preset,
                     "content_weight": weight, "samples": len(ys),
                     "style_samples": style_samples, "seed": seed, "repeat": repeat,
                     "threads": threads, "reference": "torch_reference.objective, float64"},
        "agreement": points,
        "max_gradient_rel_error": max(p["gradient"]["rel_error"] for p in points),
        "max_error_ratio_to_torch_f32": max_error_ratio(points),
        "min_gradient_cosine": min(p["gradient"]["cosine"] for p in points),
        "timing": timing,
        "memory": memory_report,
        "run": run,
        "host": host_info("cpu"),
    }


def _first_divergence(a: list[float], b: list[float], tol: float = 1e-3) -> int | None:
    """The first evaluation (1-based) where the two loss curves differ by more than tol
    (relative), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if rel_diff(x, y) > tol:
            return i + 1
    return None


@lru_cache(maxsize=2)
def _engine(threads: int):
    from .features import VGGFeatures

    return VGGFeatures(device="cpu", threads=threads)
