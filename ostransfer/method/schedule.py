"""The coarse-to-fine schedule (docs/algorithm.md §5): scales, content weights, initialisation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..imaging.io import resize_array
from ..imaging.pyramid import finest_band

FIRST_SIDE = 64
WEIGHT_SIDE = 512  # the scale side at which the content weight is the given one


def scale_sides(long_side: int, first: int = FIRST_SIDE) -> list[int]:
    """Long sides 64, 128, ... doubling below the requested size, then the size itself."""
    sides = []
    side = first
    while side < long_side:
        sides.append(side)
        side *= 2
    return sides + [long_side]


def content_weights(weight: float, sides: Sequence[int], at: int | None = WEIGHT_SIDE
                    ) -> list[float]:
    """Each scale's content weight: ``weight`` at a scale whose long side is ``at`` px, and
    ``weight * at / side`` at the others, so it doubles at each halving of the side whatever
    the output's size, as in futscdav/strotss (docs/algorithm.md §5). ``at`` None: ``weight``
    at the last scale, doubling at each coarser one (the rule until 2026-12-04, which the
    recipes and checkpoints made then use)."""
    if at is None:
        return [weight * 2.0 ** (len(sides) - 1 - i) for i in range(len(sides))]
    return [weight * at / side for side in sides]


def initial_image(content: np.ndarray, style_mean: np.ndarray, previous: np.ndarray | None,
                  last: bool, init: str = "style", recoloured: np.ndarray | None = None,
                  final_detail: float = 0.0) -> np.ndarray:
    """The starting image of a scale, (H, W, 3) float32 in [0, 1].

    Coarsest scale, by ``init``: ``style``, the style's mean colour (3,) or (H, W, 3) plus
    the content's finest band; ``content``, the content itself; ``palette``, ``recoloured``,
    the content already recoloured to the style's colours (``imaging.color.transfer_palette``).
    Finer scales: the previous result upsampled, plus the content's finest band; at the last
    scale ``final_detail`` times that band (the official code adds none there: 0)."""
    height, width = content.shape[:2]
    if previous is None:
        if init == "palette":
            if recoloured is None:
                raise ValueError("init 'palette' needs the content recoloured to the style")
            start = recoloured
        else:
            start = content.copy() if init == "content" else style_mean + finest_band(content)
    else:
        start = resize_array(previous, (width, height))
        if not last:
            start = start + finest_band(content)
        elif final_detail:
            start = start + np.float32(final_detail) * finest_band(content)
    return np.clip(start, 0.0, 1.0).astype(np.float32)
