"""The style side of one scale: the style target (or the guided regions) the objective
compares the output with, and the colour a scale starts from (docs/algorithm.md §3, §4.6)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ..arrays import array_namespace
from ..imaging.color import transfer_palette
from ..imaging.guides import Guides
from ..method import losses
from ..method.objective import Region, style_hypercolumns
from ..nets.engine import VGGFeatures

log = logging.getLogger(__name__)

MIN_REGION_PIXELS = 16  # a guided region smaller than this at a scale joins the unguided rest


def style_counts(samples: int, fractions: Sequence[float]) -> list[int]:
    """How many of the M style samples each style image gives: round(M w_i), at least 1."""
    return [max(1, round(samples * f)) for f in fractions]


def _draw(engine: VGGFeatures, styles: list[np.ndarray], fractions: list[float], preset: str,
          samples: int, rng: np.random.Generator, mask: np.ndarray | None = None,
          tile: int | None = None) -> Any:
    """M style hypercolumns (M, D): from the one style image (inside ``mask``), or
    round(M w_i) from each of several; maps read in tiles of ``tile`` px if given."""
    xp = engine.xp
    if len(styles) == 1:
        return style_hypercolumns(engine, xp.asarray(styles[0]), preset, samples, rng, mask,
                                  tile)
    counts = style_counts(samples, fractions)
    parts = [style_hypercolumns(engine, xp.asarray(s), preset, m, rng, tile=tile)
             for s, m in zip(styles, counts)]
    return array_namespace(*parts).concat(parts, axis=0)


def style_side(engine: VGGFeatures, content: np.ndarray, styles: list[np.ndarray],
               fractions: list[float], preset: str, samples: int, rng: np.random.Generator,
               guides: Guides | None = None, style_size: tuple[int, int] | None = None,
               tile: int | None = None) -> tuple[losses.StyleTarget | list[Region], np.ndarray]:
    """(the style target, or a list of guided Regions; the style's mean colour, (3,), or per
    pixel (H, W, 3) for a guided run, to start from).

    content (H, W, 3) and styles (h, w, 3) are the scale's working images. Several styles:
    M_i = round(M w_i) hypercolumns from style i, one sample set. Guided (one style image of
    ``style_size``): one region per colour pair (style samples from inside the style region,
    output samples from inside the content region), and the pixels of no region (or of a
    region too small at this scale) against the whole style. All the draws come from
    ``rng``, in a fixed order. ``tile``: read the style's maps in tiles of this many px."""
    mean = sum(f * s.reshape(-1, 3).mean(axis=0) for f, s in zip(fractions, styles))
    mean = np.asarray(mean, dtype=np.float32)

    def whole() -> losses.StyleTarget:
        return losses.style_target(_draw(engine, styles, fractions, preset, samples, rng,
                                         tile=tile))

    if guides is None:
        return whole(), mean
    content_size = (content.shape[1], content.shape[0])
    pairs, rest = guides.masks_at(content_size, style_size, MIN_REGION_PIXELS)
    if not pairs:
        log.debug("%s px: no guided region is large enough; unguided", content_size)
        return whole(), mean
    regions, start = [], np.broadcast_to(mean, content.shape).copy()
    for _, content_mask, style_mask in pairs:
        target = losses.style_target(_draw(engine, styles, fractions, preset, samples, rng,
                                           style_mask, tile))
        regions.append(Region(target, content_mask))
        start[content_mask] = styles[0][style_mask].mean(axis=0)
    if np.count_nonzero(rest) >= MIN_REGION_PIXELS:
        regions.append(Region(whole(), rest))
    log.debug("%s px: %d guided regions%s", content_size, len(pairs),
              " and the unguided rest" if len(regions) > len(pairs) else "")
    return regions, start


def palette_start(content: np.ndarray, styles: list[np.ndarray], fractions: list[float],
                  guides: Guides | None = None, style_size: tuple[int, int] | None = None
                  ) -> np.ndarray:
    """The content (H, W, 3) in the style's colours: the ``palette`` start of a run
    (docs/algorithm.md §5). Unguided: to the pixels of all the style images, each image
    weighing its fraction. Guided: each content region to its style region's pixels, the
    pixels of no region to the whole style, with the regions of ``style_side``."""
    pixels = [s.reshape(-1, 3) for s in styles]
    weights = np.concatenate([np.full(len(p), f / len(p)) for p, f in zip(pixels, fractions)])
    pairs, rest = [], None
    if guides is not None:
        pairs, rest = guides.masks_at((content.shape[1], content.shape[0]), style_size,
                                      MIN_REGION_PIXELS)
    if not pairs:
        return transfer_palette(content, np.concatenate(pixels), weights)
    start = np.empty_like(content)
    for _, content_mask, style_mask in pairs:
        start[content_mask] = transfer_palette(content[content_mask], styles[0][style_mask])
    if np.any(rest):
        start[rest] = transfer_palette(content[rest], np.concatenate(pixels), weights)
    return start
