"""Planning a run before any work: its scales, the memory it needs, and every check of the
inputs that can fail early (``preflight``)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..imaging.guides import Guides
from ..imaging.io import scaled_size
from ..method.schedule import scale_sides
from ..method.tiles import ALIGN, halo, reads_whole, window_pixels
from ..nets.vgg16 import hypercolumn_dim, hypercolumn_layers
from .options import MIN_SIDE, InputError, Options

log = logging.getLogger(__name__)


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


def work_done(plan: Sequence[Scale], scale: int, evaluation: int) -> float:
    """The share (0 to 1) of a run's work done after ``evaluation`` evaluations of scale
    ``scale``: one evaluation costs roughly a constant (the losses) plus VGG16 work per
    pixel, so the scales are weighted by 1 + (side / 180 px)^2 per evaluation."""
    cost = [1.0 + (s.side / 180.0) ** 2 for s in plan]
    total = sum(s.budget * c for s, c in zip(plan, cost))
    before = sum(s.budget * c for s, c in zip(plan[:scale], cost[:scale]))
    return (before + evaluation * cost[scale]) / total


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
    weights = opts.content_weights(sides)
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
# The objective keeps the content's hypercolumn-layer maps for a scale (1000 bytes per
# content pixel for either preset's layers) when they take at most this much: that saves a
# VGG16 forward at every sample set, about a quarter of an evaluation (same results).
CONTENT_MAPS_BYTES_PER_PIXEL = 1000
KEEP_CONTENT_MAPS_MAX_BYTES = 2**30
# Read in tiles (method/tiles.py), the engine holds one window and the run, per output
# pixel, only its images and the optimiser's variables (no dense gradient maps). Cautious:
# runs with one RMSprop evaluation per scale peaked at 3.24 GiB (2048 px, cores of 512) and
# 4.59 GiB (4096 px, cores of 640) where this estimates 4.0 and 8.0 (about 50 bytes per
# output pixel fit both); L-BFGS-B's float64 history is not measured in tiles.
TILED_OUTPUT_BYTES_PER_PIXEL = {"rmsprop": 400, "lbfgs": 2400, "mlbfgs": 2400}


def keeps_content_maps(content_size: tuple[int, int]) -> bool:
    """Whether a scale with a content of (width, height) px keeps the content's maps."""
    return CONTENT_MAPS_BYTES_PER_PIXEL * content_size[0] * content_size[1] \
        <= KEEP_CONTENT_MAPS_MAX_BYTES


def estimate_memory(plan: Sequence[Scale], opts: Options, regions: int = 1) -> int:
    """Estimated peak bytes of a run on the CPU (the largest scale dominates); a guided run
    holds a style sample set for each of its ``regions``; ``opts.tile``: read in tiles."""
    d = hypercolumn_dim(opts.preset)
    samples = 3 * opts.style_samples * d * 4 * regions + 4 * opts.samples * opts.style_samples * 4 \
        + 4 * opts.samples ** 2 * 4 + 4 * opts.samples * d * 4
    margin = halo(hypercolumn_layers(opts.preset))
    peak = 0
    for scale in plan:
        sizes = (scale.content_size, *(scale.style_sizes or (scale.style_size,)))
        content_px = scale.content_size[0] * scale.content_size[1]
        engine_px = max(window_pixels(h, w, opts.tile, margin) for w, h in sizes)
        if not reads_whole(scale.content_size[1], scale.content_size[0], opts.tile):
            per_pixel = TILED_OUTPUT_BYTES_PER_PIXEL[opts.optimizer]
        else:
            per_pixel = OUTPUT_BYTES_PER_PIXEL + (
                CONTENT_MAPS_BYTES_PER_PIXEL if keeps_content_maps(scale.content_size) else 0)
        peak = max(peak, ENGINE_BYTES_PER_PIXEL * engine_px + per_pixel * content_px)
    return BASE_BYTES + samples + peak


def fit_to_memory(content_size: tuple[int, int],
                  style_size: tuple[int, int] | Sequence[tuple[int, int]], opts: Options,
                  device: str = "cpu", regions: int = 1, max_memory: int | None = None
                  ) -> Options:
    """``opts`` with ``tile`` set to the largest core whose run fits the memory budget
    (``available_memory``) when whole images do not: on the CPU, when no tile was chosen.
    Otherwise (or when nothing fits, or the images cannot be planned: ``preflight`` says so)
    ``opts`` as given."""
    limit = available_memory(max_memory) if device == "cpu" and opts.tile is None else None
    if limit is None:
        return opts
    try:
        plan = plan_scales(content_size, style_size, opts)
    except ValueError:  # preflight says what, naming the images
        return opts
    fitted = _fit(plan, opts, regions, limit)
    if fitted is None or fitted is opts:
        return opts
    log.info("reading the maps in tiles of %d px to fit in %s", fitted.tile, format_bytes(limit))
    return fitted


def _fit(plan: Sequence[Scale], opts: Options, regions: int, limit: int) -> Options | None:
    """``opts`` if its run fits in ``limit`` bytes, else (no tile chosen) with the largest
    tile core, at least twice the halo, that fits; None when nothing does."""
    if estimate_memory(plan, opts, regions) <= limit:
        return opts
    if opts.tile is not None:
        return None
    long_side = max(max(s.content_size) for s in plan)
    # a core under twice the halo would make a window more than 4 times its core's pixels
    smallest = 2 * halo(hypercolumn_layers(opts.preset))
    for core in range(long_side // ALIGN * ALIGN, smallest - 1, -ALIGN):
        trial = dataclasses.replace(opts, tile=core)
        if estimate_memory(plan, trial, regions) <= limit:
            return trial
    return None


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _parse_bytes(text: str) -> int | None:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        return None
    try:
        return int(float(match[1]) * _UNITS[match[2]])
    except ValueError:
        return None


def parse_memory(text: str, what: str) -> int:
    """Bytes from a size like "8G" or "512M"; InputError naming ``what`` otherwise."""
    value = _parse_bytes(text)
    if value is None or value <= 0:
        raise InputError(f"{what}{text!r} is not a size like 8G or 512M")
    return value


def available_memory(max_memory: int | None = None) -> int | None:
    """Bytes a run may use: MemAvailable from /proc/meminfo, capped by ``max_memory`` and by
    the environment variable OSTRANSFER_MAX_MEMORY (e.g. "6G") if set; None when none is
    known."""
    limits = [] if max_memory is None else [max_memory]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cap = os.environ.get("OSTRANSFER_MAX_MEMORY")
    if cap:
        limits.append(parse_memory(cap, "OSTRANSFER_MAX_MEMORY="))
    return min(limits) if limits else None


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def largest_size(content_size: tuple[int, int],
                 style_size: tuple[int, int] | Sequence[tuple[int, int]], opts: Options,
                 limit: int, regions: int = 1) -> int | None:
    """The largest output size (long side, px) whose estimate fits in ``limit`` bytes (in
    tiles, unless ``opts.tile`` is set, with the tile that fits best)."""
    def fits(size: int) -> bool:
        try:
            trial = dataclasses.replace(opts, size=size, evaluations=None)
            return _fit(plan_scales(content_size, style_size, trial), trial, regions,
                        limit) is not None
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
              guides: Guides | None = None, max_memory: int | None = None) -> list[Scale]:
    """Check a run before any work: the options, the style weights and guides, the image
    sizes at every scale and (on the CPU) the memory the run needs against what the machine
    has (capped by ``max_memory`` bytes). Returns the plan; raises ValueError (InputError,
    GuideError) with one line otherwise."""
    opts = opts.validated()
    check_inputs(content_size, style_sizes(style_size), opts, guides)
    plan = plan_scales(content_size, style_size, opts, names)
    regions = 1 if guides is None else len(guides) + 1
    if device == "cpu":
        limit = available_memory(max_memory)
        need = estimate_memory(plan, opts, regions)
        if limit is not None and need > limit:
            best = largest_size(content_size, style_size, opts, limit, regions)
            hint = (f"the largest size that fits is {best} px" if best
                    else "not even the smallest size fits")
            tiled = f" in tiles of {opts.tile} px" if opts.tile else ""
            raise InputError(f"a {opts.size} px run needs about {format_bytes(need)} of memory"
                             f"{tiled} and {format_bytes(limit)} is available; {hint}")
    return plan
