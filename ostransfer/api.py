"""The Python API: ``stylize(content, style, **options)`` and the reusable ``Stylizer``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import losses
from .features import VGGFeatures, cuda_available
from .images import ImageLike, load_pil, resize, scaled_size, to_array
from .network import PRESETS
from .objective import Objective, style_hypercolumns
from .optimize import Step, Stop, lbfgs, rmsprop, to_numpy
from .schedule import content_weights, initial_image, scale_sides

log = logging.getLogger(__name__)

# Final-scale content weight of each preset (see docs/defaults.md for the sweep behind them).
DEFAULT_CONTENT_WEIGHT = {"paper": 1024.0, "strotss": 2.0}
OPTIMIZERS = ("lbfgs", "rmsprop")


@dataclass(frozen=True)
class Progress:
    """Reported after every function evaluation."""

    scale: int  # 0-based
    scales: int
    side: int  # long side of this scale, px
    evaluation: int  # within the scale, 1-based
    budget: int  # evaluations of this scale
    loss: float
    terms: dict[str, float]
    elapsed: float  # seconds since the run started


@dataclass(frozen=True)
class Options:
    """Everything that shapes a result; the defaults are the measured ones."""

    size: int = 512
    preset: str = "paper"
    content_weight: float | None = None  # None: the preset's default
    optimizer: str = "lbfgs"
    evaluations: Sequence[int] | int | None = None  # per scale; None: the optimizer's default
    per_round: int = 40  # L-BFGS-B evaluations per sample set
    samples: int = 1024  # N, output/content hypercolumns per sample set
    style_samples: int = 5000  # M, style hypercolumns per scale
    init: str = "style"  # "style": style mean + content detail; "content": the content image
    seed: int = 0

    def validated(self) -> "Options":
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.init not in ("style", "content"):
            raise ValueError(f"unknown init {self.init!r}; choose style or content")
        if not 16 <= self.size <= 8192:
            raise ValueError(f"size must be between 16 and 8192 px, got {self.size}")
        weight = self.content_weight
        if weight is not None and not (np.isfinite(weight) and weight > 0):
            raise ValueError(f"content weight must be a positive number, got {weight}")
        for name in ("per_round", "samples", "style_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1")
        budgets = self.budgets(len(scale_sides(self.size)))
        if any(b < 1 for b in budgets):
            raise ValueError(f"evaluations per scale must be at least 1, got {budgets}")
        return self

    @property
    def final_weight(self) -> float:
        return self.content_weight if self.content_weight is not None else DEFAULT_CONTENT_WEIGHT[self.preset]

    def budgets(self, scales: int) -> list[int]:
        """Evaluations (L-BFGS-B) or steps (RMSprop) for each scale."""
        if self.evaluations is None:
            per_scale = 200 if self.optimizer == "rmsprop" else 100
            return [per_scale] * scales
        if isinstance(self.evaluations, int):
            return [self.evaluations] * scales
        budgets = list(self.evaluations)
        if len(budgets) != scales:
            raise ValueError(f"{len(budgets)} evaluation budgets given for {scales} scales")
        return budgets


class Interrupted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM or a callback raising ``optimize.Stop``).

    ``image`` is the best image of the scale in progress, (h, w, 3) float32 in [0, 1], at that
    scale's size (the previous scale's result if none was evaluated yet), or None."""

    def __init__(self, image: np.ndarray | None, side: int):
        super().__init__(f"interrupted at the {side} px scale")
        self.image, self.side = image, side


class Stylizer:
    """Loads the VGG16 sessions once; ``stylize`` may be called many times.

    device: "auto" (the GPU when onnxruntime-gpu, CuPy and a CUDA device are present),
    "cpu" or "cuda"."""

    def __init__(self, device: str = "auto", threads: int | None = None):
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        self.engine = VGGFeatures(device=device, threads=threads)
        self.device = device
        log.info("ostransfer running on %s", device)

    def stylize(self, content: ImageLike, style: ImageLike, *,
                progress: Callable[[Progress], None] | None = None, **options: Any) -> Image.Image:
        """Stylise `content` with `style` (paths, PIL images or (H, W, 3) arrays) -> PIL image."""
        opts = Options(**options).validated()
        content_pil, style_pil = load_pil(content), load_pil(style)
        return to_pil(self.run(content_pil, style_pil, opts, progress))

    def run(self, content: Image.Image, style: Image.Image, opts: Options,
            progress: Callable[[Progress], None] | None = None) -> np.ndarray:
        """The coarse-to-fine optimisation; returns (H, W, 3) float32 in [0, 1].

        Raises Interrupted, holding the best image so far, on KeyboardInterrupt or Stop."""
        rng = np.random.default_rng(opts.seed)
        sides = scale_sides(opts.size)
        weights = content_weights(opts.final_weight, len(sides))
        budgets = opts.budgets(len(sides))
        start = time.perf_counter()
        result = None
        xp = self.engine.xp
        for index, (side, weight, budget) in enumerate(zip(sides, weights, budgets)):
            content_arr = to_array(resize(content, scaled_size(content.size, side)))
            style_arr = to_array(resize(style, scaled_size(style.size, side)))
            style_cols = style_hypercolumns(self.engine, xp.asarray(style_arr), opts.preset,
                                            opts.style_samples, rng)
            target = losses.style_target(style_cols)
            objective = Objective(self.engine, content_arr, target, opts.preset, weight, opts.samples)
            last = index == len(sides) - 1
            image = initial_image(content_arr, style_arr.reshape(-1, 3).mean(axis=0), result, last,
                                  from_content=opts.init == "content")

            best: list = [np.inf, result]

            def report(step: Step, index=index, side=side, best=best) -> None:
                if step.loss < best[0]:
                    best[:] = [step.loss, step.image]
                if progress:
                    progress(Progress(index, len(sides), side, step.evaluation, step.budget,
                                      step.loss, step.terms, time.perf_counter() - start))

            log.debug("scale %d/%d: %d px, content weight %g, %d evaluations",
                      index + 1, len(sides), side, weight, budget)
            try:
                if opts.optimizer == "lbfgs":
                    result = lbfgs(objective, image, budget, opts.per_round, rng, report)
                else:
                    result = rmsprop(objective, image, budget, rng, lr=1e-3 if last else 2e-3,
                                     callback=report)
            except (KeyboardInterrupt, Stop):
                raise Interrupted(best[1], side) from None
            del objective
        return to_numpy(result)


def to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 3) float in [0, 1] -> 8-bit RGB PIL image."""
    return Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))


@lru_cache(maxsize=2)
def _default_stylizer(device: str) -> Stylizer:
    return Stylizer(device=device)


def stylize(content: ImageLike, style: ImageLike, *, device: str = "auto",
            progress: Callable[[Progress], None] | None = None, **options: Any) -> Image.Image:
    """Stylise once (the model stays loaded for later calls in the same process).

    Options: size, preset ("paper" | "strotss"), content_weight, optimizer ("lbfgs" |
    "rmsprop"), evaluations (per scale), per_round, samples, style_samples, init
    ("style" | "content"), seed. Returns a PIL RGB image."""
    return _default_stylizer(device).stylize(content, style, progress=progress, **options)
