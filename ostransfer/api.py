"""The Python API: ``stylize(content, style, **options)`` and the reusable ``Stylizer``."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import checkpoint as ckpt
from . import losses
from .checkpoint import Checkpointer, RunState
from .color import DEFAULT_METHOD as DEFAULT_COLOR_METHOD, METHODS as COLOR_METHODS, preserve_colors
from .features import VGGFeatures, cuda_available
from .guides import Guides
from .images import ImageLike, load_pil, resize, scaled_size, to_array
from .network import PRESETS, hypercolumn_dim
from .objective import Objective, Region, style_hypercolumns
from .optimize import NonFiniteError, Step, Stop, lbfgs, rmsprop, to_numpy
from .schedule import content_weights, initial_image, scale_sides

log = logging.getLogger(__name__)

# Final-scale content weight of each preset (see docs/defaults.md for the sweep behind them).
DEFAULT_CONTENT_WEIGHT = {"paper": 8192.0, "strotss": 2.0}
OPTIMIZERS = ("lbfgs", "rmsprop")
MIN_SIDE = 16  # VGG16 pools four times before relu5_x: the short side needs >= 16 px
MAX_SIZE = 8192
MIN_REGION_PIXELS = 16  # a guided region smaller than this at a scale joins the unguided rest


class InputError(ValueError):
    """Inputs or options a run cannot use (too small, too large for memory); one line."""


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
    per_round: int = 50  # L-BFGS-B evaluations per sample set (docs/defaults.md)
    pyramid_levels: int = 0  # L-BFGS-B's variables: a Laplacian pyramid of this many levels; 0: pixels
    samples: int = 1024  # N, output/content hypercolumns per sample set
    style_samples: int = 5000  # M, style hypercolumns per scale
    init: str = "style"  # "style": style mean + content detail; "content": the content image
    seed: int = 0
    style_weights: Sequence[float] | None = None  # one per style image; None: equal weights
    preserve_color: bool | str = False  # True, "luminance" or "statistics": keep the content's colours

    def validated(self) -> "Options":
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.init not in ("style", "content"):
            raise ValueError(f"unknown init {self.init!r}; choose style or content")
        for name in ("size", "per_round", "pyramid_levels", "samples", "style_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name.replace('_', ' ')} must be an integer, got {value!r}")
        if not MIN_SIDE <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be between {MIN_SIDE} and {MAX_SIZE} px, got {self.size}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")
        if not 0 <= self.pyramid_levels <= 12:
            raise ValueError(f"pyramid levels must be between 0 and 12, got {self.pyramid_levels}")
        weight = self.content_weight
        if weight is not None and not (isinstance(weight, (int, float, np.number))
                                       and np.isfinite(weight) and weight > 0):
            raise ValueError(f"content weight must be a positive number, got {weight}")
        if self.style_weights is not None:
            weights = self.style_weights
            if isinstance(weights, (str, bytes)) \
                    or not isinstance(weights, (Sequence, np.ndarray)) or len(weights) == 0:
                raise ValueError(f"style weights must be a list of positive numbers, got "
                                 f"{weights!r}")
            for w in weights:
                if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) \
                        or not (np.isfinite(w) and w > 0):
                    raise ValueError(f"style weights must be positive numbers, got {w}")
        color = self.preserve_color
        if not (isinstance(color, (bool, np.bool_)) or color in COLOR_METHODS):
            raise ValueError(f"preserve color must be True, False or one of "
                             f"{', '.join(COLOR_METHODS)}, got {color!r}")
        for name in ("per_round", "samples", "style_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1, got "
                                 f"{getattr(self, name)}")
        budgets = self.budgets(len(scale_sides(self.size)))
        if any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b in budgets):
            raise ValueError(f"evaluations per scale must be integers, got {budgets}")
        if any(b < 1 for b in budgets):
            raise ValueError(f"evaluations per scale must be at least 1, got {budgets}")
        return self

    @property
    def color_method(self) -> str | None:
        """The colour preservation method, or None for none."""
        if self.preserve_color is True or self.preserve_color is np.True_:
            return DEFAULT_COLOR_METHOD
        return self.preserve_color or None

    def style_fractions(self, styles: int) -> list[float]:
        """The style weights normalised to sum to 1 (equal when not given)."""
        if self.style_weights is None:
            return [1.0 / styles] * styles
        if len(self.style_weights) != styles:
            raise InputError(f"{len(self.style_weights)} style weights given for {styles} style "
                             f"image{'s' if styles != 1 else ''}")
        total = float(sum(self.style_weights))
        return [float(w) / total for w in self.style_weights]

    @property
    def final_weight(self) -> float:
        return self.content_weight if self.content_weight is not None else DEFAULT_CONTENT_WEIGHT[self.preset]

    def budgets(self, scales: int) -> list[int]:
        """Evaluations (L-BFGS-B) or steps (RMSprop) for each of the last `scales` scales.

        Defaults: RMSprop 200 steps per scale (the paper); L-BFGS-B fewer evaluations as the
        scales get finer (120 at 64 px, 74 at 128, 45 at 256, 28 at 512, 20 at 1024), since
        each finer scale starts from the coarser result and costs more (docs/defaults.md)."""
        if self.evaluations is None:
            sides = scale_sides(self.size)[-scales:]
            if self.optimizer == "rmsprop":
                return [200] * len(sides)
            return [max(20, round(120 * (64 / side) ** 0.7)) for side in sides]
        if isinstance(self.evaluations, (int, np.integer)):
            return [self.evaluations] * scales
        budgets = list(self.evaluations)
        if len(budgets) != scales:
            raise ValueError(f"{len(budgets)} evaluation budgets given for {scales} scales")
        return budgets


class Unfinished(Exception):
    """A run that ended early. ``image`` is the best image of the scale in progress, (h, w, 3)
    float32 in [0, 1], at that scale's size (the previous scale's result if none was
    evaluated yet), or None; ``side`` is its long side; ``state`` is the last state
    written to the run's checkpoint folder (None without one, or before the first write)."""

    def __init__(self, message: str, image: np.ndarray | None, side: int,
                 state: RunState | None = None):
        super().__init__(message)
        self.image, self.side, self.state = image, side, state


class Interrupted(Unfinished):
    """The run was stopped (Ctrl-C, SIGTERM or a callback raising ``optimize.Stop``)."""

    def __init__(self, image: np.ndarray | None, side: int, state: RunState | None = None):
        super().__init__(f"interrupted at the {side} px scale", image, side, state)


class RunFailed(Unfinished):
    """The run broke off: a non-finite loss or gradient (``term`` names it), or an error
    from the engine or the machine (out of memory). ``__cause__`` is the original error."""

    def __init__(self, message: str, image: np.ndarray | None, side: int,
                 state: RunState | None = None, term: str | None = None):
        super().__init__(message, image, side, state)
        self.term = term


# -- planning: sizes and memory, checked before any work -------------------------------------

@dataclass(frozen=True)
class Scale:
    """One scale of a run: sizes are (width, height)."""

    index: int  # position in the full coarse-to-fine schedule (names its random streams)
    side: int  # long side of the output at this scale
    content_size: tuple[int, int]
    style_size: tuple[int, int]
    weight: float  # content weight
    budget: int  # evaluations
    style_sizes: tuple[tuple[int, int], ...] = ()  # every style image's (style_size: the first)


def _fit_short_side(size: tuple[int, int], side: int) -> tuple[int, int]:
    """scaled_size(size, side), with the long side raised as little as needed to give the
    short side at least MIN_SIDE px."""
    if min(scaled_size(size, side)) < MIN_SIDE:
        side = max(side, math.floor((MIN_SIDE - 0.5) * max(size) / min(size)))
        while min(scaled_size(size, side)) < MIN_SIDE:
            side += 1
    return scaled_size(size, side)


def style_sizes(style_size: tuple[int, int] | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """One (width, height) or a list of them -> a list of them."""
    if len(style_size) and isinstance(style_size[0], (int, np.integer)):
        return [tuple(style_size)]
    return [tuple(size) for size in style_size]


def _names(names: Sequence[str], styles: int) -> list[str]:
    """Names for the content and each style image in messages."""
    names = list(names)
    default = "style image" if styles == 1 else None
    return [names[0] if names else "content image"] + [
        names[1 + k] if len(names) > 1 + k else default or f"style image {k + 1}"
        for k in range(styles)]


def plan_scales(content_size: tuple[int, int],
                style_size: tuple[int, int] | Sequence[tuple[int, int]], opts: Options,
                names: Sequence[str] = ("content image", "style image")) -> list[Scale]:
    """The scales of a run on images of these (width, height) sizes (one style size, or
    one per style image); InputError if the images are too small.

    Every image must have at least MIN_SIDE px on each side. A coarse scale at which the
    content's short side would fall under MIN_SIDE (a panorama) is skipped: the run starts
    at the first scale where it fits, and must fit at the final one. A style is only
    sampled: at a scale where it would be too thin it is enlarged until it fits."""
    sizes = style_sizes(style_size)
    if not sizes:
        raise InputError("no style image given")
    names = _names(names, len(sizes))
    for name, (width, height) in zip(names, [content_size, *sizes]):
        if min(width, height) < MIN_SIDE:
            raise InputError(f"{name}: the image is {width}x{height} px; VGG16 needs at least "
                             f"{MIN_SIDE} px on each side")
    sides = scale_sides(opts.size)
    weights = content_weights(opts.final_weight, len(sides))
    budgets = opts.budgets(len(sides))
    plan = []
    for index, (side, weight, budget) in enumerate(zip(sides, weights, budgets)):
        size = scaled_size(content_size, side)
        if min(size) < MIN_SIDE:
            if index == len(sides) - 1:
                needed = _fit_short_side(content_size, side)
                raise InputError(
                    f"{names[0]}: at size {opts.size} the output would be {size[0]}x{size[1]} px, "
                    f"under the {MIN_SIDE} px VGG16 needs on the short side; use a size of at "
                    f"least {max(needed)}")
            log.info("skipping the %d px scale: the content would be %dx%d px", side, *size)
            continue
        fitted = tuple(_fit_short_side(s, side) for s in sizes)
        plan.append(Scale(index, side, size, fitted[0], weight, budget, fitted))
    return plan


# Peak memory of a CPU run, from the peak RSS of runs on square images with the default
# samples (128 px: 0.68 GB, 256: 0.93, 384: 1.54, 512: 2.21, 768: 4.73; the per-pixel cost
# grows a little with size as ONNX Runtime's arena grows in doubling chunks), rounded up:
# the runtime with both VGG16 sessions; per pixel of the image the engine runs on (its 13
# ReLU maps, the zero gradients it binds, ONNX Runtime's VJP workspace); per pixel of the
# output (the objective's gradient maps, L-BFGS-B's float64 history, the images); and the
# sample sets (the style's hypercolumns and statistics, the N x M cost matrices). The
# estimate is 15-25 % above those measurements.
BASE_BYTES = 400 * 2**20
ENGINE_BYTES_PER_PIXEL = 4600
OUTPUT_BYTES_PER_PIXEL = 3400


def estimate_memory(plan: Sequence[Scale], opts: Options, regions: int = 1) -> int:
    """Estimated peak bytes of a run on the CPU (the largest scale dominates); a guided run
    holds a style sample set for each of its ``regions``."""
    d = hypercolumn_dim(opts.preset)
    samples = 3 * opts.style_samples * d * 4 * regions + 4 * opts.samples * opts.style_samples * 4 \
        + 4 * opts.samples ** 2 * 4 + 4 * opts.samples * d * 4
    peak = 0
    for scale in plan:
        content_px = scale.content_size[0] * scale.content_size[1]
        style_px = max(w * h for w, h in (scale.style_sizes or (scale.style_size,)))
        peak = max(peak, ENGINE_BYTES_PER_PIXEL * max(content_px, style_px)
                   + OUTPUT_BYTES_PER_PIXEL * content_px)
    return BASE_BYTES + samples + peak


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _parse_bytes(text: str) -> int | None:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        return None
    try:
        return int(float(match[1]) * _UNITS[match[2]])
    except ValueError:
        return None


def available_memory() -> int | None:
    """Bytes a run may use: MemAvailable from /proc/meminfo, capped by the environment
    variable OSTRANSFER_MAX_MEMORY (e.g. "6G") if set; None when neither is known."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cap = os.environ.get("OSTRANSFER_MAX_MEMORY")
    if cap:
        value = _parse_bytes(cap)
        if value is None:
            raise InputError(f"OSTRANSFER_MAX_MEMORY={cap!r} is not a size like 8G or 512M")
        limits.append(value)
    return min(limits) if limits else None


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def largest_size(content_size: tuple[int, int],
                 style_size: tuple[int, int] | Sequence[tuple[int, int]], opts: Options,
                 limit: int, regions: int = 1) -> int | None:
    """The largest output size (long side, px) whose estimate fits in ``limit`` bytes."""
    def fits(size: int) -> bool:
        try:
            trial = dataclasses.replace(opts, size=size, evaluations=None)
            return estimate_memory(plan_scales(content_size, style_size, trial), trial,
                                   regions) <= limit
        except ValueError:
            return False
    low, high = max(_fit_short_side(content_size, MIN_SIDE)), opts.size
    if low > high or not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def check_inputs(content_size: tuple[int, int], sizes: Sequence[tuple[int, int]],
                 opts: Options, guides: Guides | None = None) -> None:
    """What the options and guides need of the images: one weight per style image; guides
    with a single style image, each guide of its image's shape. InputError / GuideError."""
    if not sizes:
        raise InputError("no style image given")
    opts.style_fractions(len(sizes))
    if guides is not None:
        if len(sizes) > 1:
            raise InputError(f"region guides work with one style image, got {len(sizes)}; "
                             f"combine the styles into one image and mark them in the style "
                             f"guide instead")
        guides.check_shapes(content_size, sizes[0])


def preflight(content_size: tuple[int, int],
              style_size: tuple[int, int] | Sequence[tuple[int, int]], opts: Options,
              device: str = "cpu", names: Sequence[str] = ("content image", "style image"),
              guides: Guides | None = None) -> list[Scale]:
    """Check a run before any work: the options, the style weights and guides, the image
    sizes at every scale and (on the CPU) the memory the run needs against what the machine
    has. Returns the plan; raises ValueError (InputError, GuideError) with one line
    otherwise."""
    opts = opts.validated()
    check_inputs(content_size, style_sizes(style_size), opts, guides)
    plan = plan_scales(content_size, style_size, opts, names)
    regions = 1 if guides is None else len(guides) + 1
    if device == "cpu":
        limit = available_memory()
        need = estimate_memory(plan, opts, regions)
        if limit is not None and need > limit:
            best = largest_size(content_size, style_size, opts, limit, regions)
            hint = (f"the largest size that fits is {best} px" if best
                    else "not even the smallest size fits")
            raise InputError(f"a {opts.size} px run needs about {format_bytes(need)} of memory "
                             f"and {format_bytes(limit)} is available; {hint}")
    return plan


def stream_rng(seed: int, scale: int, stream: int) -> np.random.Generator:
    """The random draws of (seed, scale, stream): stream 0 samples the style at that scale,
    stream r + 1 is round r's sample set. Independent of everything before it, so a run
    continued from a checkpoint draws what the uninterrupted run would have drawn."""
    return np.random.default_rng(np.random.SeedSequence([seed, scale, stream]))


# -- the run ---------------------------------------------------------------------------------

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

    def stylize(self, content: ImageLike, style: ImageLike | Sequence[ImageLike], *,
                content_guide: ImageLike | None = None, style_guide: ImageLike | None = None,
                progress: Callable[[Progress], None] | None = None,
                checkpoint: str | os.PathLike | None = None, resume: bool = False,
                **options: Any) -> Image.Image:
        """Stylise `content` with `style` (paths, PIL images or (H, W, 3) arrays) -> PIL image.

        style: one image, or a list of them (mixed in proportion to ``style_weights``).
        content_guide, style_guide: colour-coded region guides (both or neither; one style
        image): each colour found in both pairs a content region with a style region.
        checkpoint: a folder to save the run's state in (after each scale and every few
        minutes); with resume=True the run continues from the state saved there (which
        must come from the same inputs and options). Raises ValueError on unusable inputs
        or options (before any work), Interrupted or RunFailed (holding the best image)."""
        opts = Options(**options).validated()
        content_pil = load_pil(content)
        styles = [load_pil(s) for s in style_list(style)]
        guides = load_guides(content_guide, style_guide, opts)
        preflight(content_pil.size, [s.size for s in styles], opts, self.device, guides=guides)
        saver = state = None
        if checkpoint is not None:
            identity = ckpt.identity(content_pil, styles, opts, guides=_guide_images(guides))
            if resume:
                state = ckpt.load(checkpoint, identity)
            saver = Checkpointer(checkpoint, identity)
        elif resume:
            raise ValueError("resume=True needs the checkpoint folder")
        return to_pil(self.run(content_pil, styles, opts, progress, guides=guides,
                               checkpoint=saver, resume=state))

    def run(self, content: Image.Image, style: Image.Image | Sequence[Image.Image],
            opts: Options, progress: Callable[[Progress], None] | None = None, *,
            guides: Guides | None = None, checkpoint: Checkpointer | None = None,
            resume: RunState | None = None) -> np.ndarray:
        """The coarse-to-fine optimisation; returns (H, W, 3) float32 in [0, 1].

        style: one PIL image or a list; guides: region guides (``load_guides``), or None.
        checkpoint: saves the state after each scale and (when due) at round boundaries;
        resume: a state to continue from. Raises Interrupted on KeyboardInterrupt or Stop,
        RunFailed on any other error during the optimisation, both holding the best image."""
        opts = opts.validated()
        styles = style_list(style)
        check_inputs(content.size, [s.size for s in styles], opts, guides)
        fractions = opts.style_fractions(len(styles))
        plan = plan_scales(content.size, [s.size for s in styles], opts)
        state = resume or RunState(scales=len(plan))
        if state.scales != len(plan) or not 0 <= state.scale <= len(plan):
            raise ckpt.CheckpointError(f"the checkpoint has {state.scales} scales, this run "
                                       f"{len(plan)}")
        if state.complete or state.scale == len(plan):
            if state.result is None:
                raise ckpt.CheckpointError("the checkpoint is marked finished but holds no image")
            return np.asarray(state.result, dtype=np.float32)
        start = time.perf_counter()
        result = state.result

        def saved() -> RunState | None:
            return checkpoint.saved if checkpoint is not None else None

        for position in range(state.scale, len(plan)):
            scale = plan[position]
            last = position == len(plan) - 1
            continuing = position == state.scale and bool(state.optimizer)
            best: list = [np.inf, state.optimizer.get("x", state.optimizer.get("image"))
                          if continuing else result]

            def report(step: Step, position=position, scale=scale, best=best) -> None:
                if step.loss < best[0]:
                    best[:] = [step.loss, step.image]
                if progress:
                    progress(Progress(position, len(plan), scale.side, step.evaluation,
                                      step.budget, step.loss, step.terms,
                                      time.perf_counter() - start))

            def on_round(rounds: int, count: int, opt_state: dict, position=position,
                         previous=result) -> None:
                if checkpoint is not None and checkpoint.due():
                    checkpoint.save(RunState(position, rounds, count, previous, opt_state,
                                             len(plan)))

            try:
                content_arr = to_array(resize(content, scale.content_size))
                style_arrs = [to_array(resize(s, size))
                              for s, size in zip(styles, scale.style_sizes)]
                target, style_mean = self.style_side(content_arr, style_arrs, fractions, opts,
                                                     scale, guides)
                objective = Objective(self.engine, content_arr, target, opts.preset, scale.weight,
                                      opts.samples)
                if continuing:
                    first_round, done = state.rounds, state.evaluations
                    image = np.asarray(state.optimizer.get("x", state.optimizer.get("image")),
                                       dtype=np.float32)
                else:
                    first_round = done = 0
                    image = initial_image(content_arr, style_mean, result, last,
                                          from_content=opts.init == "content")
                log.debug("scale %d/%d: %d px, content weight %g, %d evaluations%s",
                          position + 1, len(plan), scale.side, scale.weight, scale.budget,
                          f" (continuing after {done})" if done else "")
                rounds = lambda r, i=scale.index: stream_rng(opts.seed, i, r + 1)  # noqa: E731
                if opts.optimizer == "lbfgs":
                    result = lbfgs(objective, image, scale.budget, opts.per_round, rounds, report,
                                   levels=opts.pyramid_levels, first_round=first_round, done=done,
                                   on_round=on_round)
                else:
                    result = rmsprop(objective, image, scale.budget, rounds,
                                     lr=1e-3 if last else 2e-3, callback=report,
                                     per_round=opts.per_round, first_round=first_round, done=done,
                                     state=state.optimizer if continuing else None,
                                     on_round=on_round)
                result = to_numpy(result)
                del objective
                if last and opts.color_method is not None:
                    result = preserve_colors(result, content_arr, opts.color_method)
            except (KeyboardInterrupt, Stop):
                raise Interrupted(best[1], _side(best[1], scale), saved()) from None
            except NonFiniteError as exc:
                raise RunFailed(f"the loss is not finite at the {scale.side} px scale: {exc}",
                                best[1], _side(best[1], scale), saved(), exc.term) from exc
            except MemoryError as exc:
                raise RunFailed(f"out of memory at the {scale.side} px scale", best[1],
                                _side(best[1], scale), saved()) from exc
            except Exception as exc:  # noqa: BLE001 - keep the best image whatever broke
                text = " ".join(str(exc).split())[:200]
                raise RunFailed(f"the run failed at the {scale.side} px scale "
                                f"({type(exc).__name__}: {text})", best[1],
                                _side(best[1], scale), saved()) from exc
            if checkpoint is not None:
                try:
                    checkpoint.save(RunState(position + 1, 0, 0, result, {}, len(plan),
                                             complete=last))
                except KeyboardInterrupt:
                    raise Interrupted(result, scale.side, saved()) from None
        return result

    def style_side(self, content: np.ndarray, styles: list[np.ndarray], fractions: list[float],
                   opts: Options, scale: Scale, guides: Guides | None = None
                   ) -> tuple[losses.StyleTarget | list[Region], np.ndarray]:
        """The style side of a scale: (the style target, or a list of guided Regions; the
        style's mean colour, (3,), or per pixel (H, W, 3) for a guided run, to start from).

        Several styles: M_i = round(M w_i) hypercolumns from style i, one sample set. Guided:
        one region per colour pair (style samples from inside the style region, output
        samples from inside the content region), and the pixels of no region (or of a
        region too small at this scale) against the whole style. All the draws come from
        the scale's stream 0, in a fixed order."""
        xp = self.engine.xp
        rng = stream_rng(opts.seed, scale.index, 0)

        def draw(mask: np.ndarray | None = None) -> Any:
            if len(styles) == 1:
                return style_hypercolumns(self.engine, xp.asarray(styles[0]), opts.preset,
                                          opts.style_samples, rng, mask)
            counts = style_counts(opts.style_samples, fractions)
            return xp.concatenate([style_hypercolumns(self.engine, xp.asarray(s), opts.preset,
                                                      m, rng) for s, m in zip(styles, counts)],
                                  axis=0)

        mean = sum(f * s.reshape(-1, 3).mean(axis=0) for f, s in zip(fractions, styles))
        mean = np.asarray(mean, dtype=np.float32)
        if guides is None:
            return losses.style_target(draw()), mean
        pairs, rest = guides.masks_at(scale.content_size, scale.style_sizes[0], MIN_REGION_PIXELS)
        if not pairs:
            log.debug("%d px scale: no guided region is large enough; unguided", scale.side)
            return losses.style_target(draw()), mean
        regions, start = [], np.broadcast_to(mean, content.shape).copy()
        for _, content_mask, style_mask in pairs:
            regions.append(Region(losses.style_target(draw(style_mask)), content_mask))
            start[content_mask] = styles[0][style_mask].mean(axis=0)
        if np.count_nonzero(rest) >= MIN_REGION_PIXELS:
            regions.append(Region(losses.style_target(draw()), rest))
        log.debug("%d px scale: %d guided regions%s", scale.side, len(pairs),
                  " and the unguided rest" if len(regions) > len(pairs) else "")
        return regions, start


def style_list(style: Any) -> list:
    """One style image or a list/tuple of them -> a list (an array is one image)."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise InputError("no style image given")
    return styles


def style_counts(samples: int, fractions: Sequence[float]) -> list[int]:
    """How many of the M style samples each style image gives: round(M w_i), at least 1."""
    return [max(1, round(samples * f)) for f in fractions]


def load_guides(content_guide: ImageLike | None, style_guide: ImageLike | None,
                opts: Options | None = None,
                names: tuple[str, str] = ("content guide", "style guide")) -> Guides | None:
    """Both guides (paths, PIL images or arrays) paired -> Guides; neither -> None.
    InputError if only one is given, ImageError if one is unreadable, GuideError if their
    colours do not pair up."""
    if content_guide is None and style_guide is None:
        return None
    if content_guide is None or style_guide is None:
        given, missing = names if style_guide is None else names[::-1]
        raise InputError(f"a {given} needs a {missing} too")
    images = load_pil(content_guide), load_pil(style_guide)
    size = opts.size if opts is not None else Options.size
    return Guides(*images, max_side=max(1024, size))


def _guide_images(guides: Guides | None) -> tuple[Image.Image, Image.Image] | None:
    return None if guides is None else (guides.content_image, guides.style_image)


def _side(image: np.ndarray | None, scale: Scale) -> int:
    """The long side of the image an Unfinished run hands back (the previous scale's result
    when nothing was evaluated at this one yet)."""
    return scale.side if image is None else int(max(image.shape[:2]))


def to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 3) float in [0, 1] -> 8-bit RGB PIL image."""
    return Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))


@lru_cache(maxsize=2)
def _default_stylizer(device: str) -> Stylizer:
    return Stylizer(device=device)


def stylize(content: ImageLike, style: ImageLike | Sequence[ImageLike], *,
            device: str = "auto", content_guide: ImageLike | None = None,
            style_guide: ImageLike | None = None,
            progress: Callable[[Progress], None] | None = None, **options: Any) -> Image.Image:
    """Stylise once (the model stays loaded for later calls in the same process).

    style: one image or a list of them; content_guide and style_guide: region guides.
    Options: size, preset ("paper" | "strotss"), content_weight, optimizer ("lbfgs" |
    "rmsprop"), evaluations (per scale), per_round, pyramid_levels, samples, style_samples, init
    ("style" | "content"), seed, style_weights (one per style image), preserve_color
    (True, "luminance" or "statistics"). Returns a PIL RGB image."""
    return _default_stylizer(device).stylize(content, style, content_guide=content_guide,
                                             style_guide=style_guide, progress=progress,
                                             **options)
