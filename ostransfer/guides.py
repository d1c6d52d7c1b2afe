"""Region guides for guided transfer: colour-coded images that pair content and style regions.

Each guide is reduced to its palette: the colours that cover at least ``min_fraction`` of
it (median-cut quantisation, so JPEG noise and anti-aliased edges fold into the nearest
main colour). A pixel belongs to the palette colour nearest to it, and to no region when
even that colour is farther than ``max_distance`` (RGB, 0-255). A colour of one guide pairs
with the nearest colour of the other when they are within ``max_distance``; every main
colour must pair, or the guides are refused with a message naming the colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

MIN_FRACTION = 0.01
MAX_DISTANCE = 60.0


class GuideError(ValueError):
    """Guides that cannot be paired; the message names the colours."""


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(round(c)):02x}" for c in colour)


def palette(image: Image.Image, min_fraction: float = MIN_FRACTION, max_colours: int = 16) -> np.ndarray:
    """The main colours of a guide image, (K, 3) float RGB 0-255, largest area first.

    k-means on (a deterministic subset of) the pixels, seeded by farthest-point picks so
    that a small region of a distinct colour gets its own centre."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    pixels = pixels[:: max(1, len(pixels) // 20000)]
    centres = [pixels[0]]
    nearest = np.linalg.norm(pixels - centres[0], axis=1)
    while len(centres) < max_colours and nearest.max() > MAX_DISTANCE / 4:
        centres.append(pixels[int(np.argmax(nearest))])
        nearest = np.minimum(nearest, np.linalg.norm(pixels - centres[-1], axis=1))
    centres = _lloyd(pixels, np.array(centres))
    # merge the centres a noisy flat colour was split into (largest first), then re-centre
    counts = np.bincount(_nearest(pixels, centres), minlength=len(centres))
    merged: list[np.ndarray] = []
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] and all(np.linalg.norm(centres[k] - other) > MAX_DISTANCE for other in merged):
            merged.append(centres[k])
    centres = _lloyd(pixels, np.array(merged))
    # A main colour covers at least min_fraction of the guide with pixels that are not on a
    # border: the smeared band between two regions (anti-aliasing, JPEG) has no interior.
    full = np.asarray(image.convert("RGB"), dtype=np.float64)
    nearest_centre = _nearest(full.reshape(-1, 3), centres).reshape(full.shape[:2])
    interiors = []
    for k in range(len(centres)):
        mask = Image.fromarray(((nearest_centre == k) * 255).astype(np.uint8))
        interiors.append(np.count_nonzero(np.asarray(mask.filter(ImageFilter.MinFilter(5)))))
    order = [k for k in np.argsort(-np.array(interiors), kind="stable")
             if interiors[k] >= min_fraction * nearest_centre.size]
    return centres[order]


def _nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(np.linalg.norm(pixels[:, None] - centres[None], axis=-1), axis=1)


def _lloyd(pixels: np.ndarray, centres: np.ndarray, iterations: int = 10) -> np.ndarray:
    """k-means refinement of the centres (K, 3) on pixels (P, 3)."""
    for _ in range(iterations):
        assign = _nearest(pixels, centres)
        centres = np.array([pixels[assign == k].mean(axis=0) if np.any(assign == k) else centres[k]
                            for k in range(len(centres))])
    return centres


def labels(image: Image.Image, colours: np.ndarray, max_distance: float = MAX_DISTANCE) -> np.ndarray:
    """(H, W) int: index of each pixel's nearest palette colour, -1 where none is close."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    dist = np.linalg.norm(rgb[:, :, None, :] - colours[None, None], axis=-1)
    nearest = np.argmin(dist, axis=-1)
    return np.where(np.min(dist, axis=-1) <= max_distance, nearest, -1)


@dataclass(frozen=True)
class RegionPairs:
    """Matched colours: content_colours[i] pairs with style_colours[i] (RGB 0-255)."""

    content_colours: np.ndarray  # (R, 3)
    style_colours: np.ndarray  # (R, 3)

    def masks(self, content_guide: Image.Image, style_guide: Image.Image
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Boolean masks per region for guides already resized to the working sizes."""
        c = labels(content_guide, self.content_colours)
        s = labels(style_guide, self.style_colours)
        return [c == i for i in range(len(self.content_colours))], \
               [s == i for i in range(len(self.style_colours))]


def pair_guides(content_guide: Image.Image, style_guide: Image.Image,
                max_distance: float = MAX_DISTANCE) -> RegionPairs:
    """Pair the main colours of the two guides; refuse guides whose colours don't pair up."""
    content_colours, style_colours = palette(content_guide), palette(style_guide)
    if len(content_colours) == 0 or len(style_colours) == 0:
        raise GuideError("a guide image has no colour covering at least 1% of it")
    dist = np.linalg.norm(content_colours[:, None] - style_colours[None], axis=-1)
    c_unpaired = [i for i in range(len(content_colours)) if dist[i].min() > max_distance]
    s_unpaired = [j for j in range(len(style_colours)) if dist[:, j].min() > max_distance]
    if c_unpaired or s_unpaired:
        parts = []
        if c_unpaired:
            parts.append("content guide colours " + ", ".join(_hex(content_colours[i]) for i in c_unpaired)
                         + " have no match in the style guide")
        if s_unpaired:
            parts.append("style guide colours " + ", ".join(_hex(style_colours[j]) for j in s_unpaired)
                         + " have no match in the content guide")
        raise GuideError("guides do not pair up: " + "; ".join(parts) +
                         f" (found content {', '.join(map(_hex, content_colours))}; "
                         f"style {', '.join(map(_hex, style_colours))})")
    match = np.argmin(dist, axis=1)
    return RegionPairs(content_colours, style_colours[match])
