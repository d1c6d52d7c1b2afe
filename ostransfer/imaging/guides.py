"""Region guides for guided transfer: colour-coded images that pair content and style regions.

Each guide is reduced to its palette: the colours that cover at least ``min_fraction`` of
it with pixels off its borders (k-means seeded by farthest-point picks, so JPEG noise and
anti-aliased edges fold into the nearest main colour; each colour named by its commonest
exact value). A pixel belongs to the palette colour nearest to it, and to no region when
even that colour is farther than ``max_distance`` (RGB, 0-255) - unless it lies in a band
narrower than ``BORDER_BAND`` px (a smeared JPEG edge), which snaps to its nearest colour
anyway (``region_labels``). A colour of one guide pairs with the nearest colour of the
other when they are within ``max_distance``; every main colour must pair, or the guides
are refused with a message naming the colours.

``Guides`` does all that once, at full size (at most ``max_side`` px), and hands out the
region masks at each scale's working sizes (label maps resized nearest-neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

MIN_FRACTION = 0.01
MAX_DISTANCE = 60.0
BORDER_BAND = 5  # px: unlabelled bands narrower than this are border noise
_CHUNK = 1 << 16


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
    centres = _modes(pixels, _lloyd(pixels, np.array(merged)))
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


def _distances(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(P, K) Euclidean distances, in chunks so that a large guide needs little memory."""
    out = np.empty((len(pixels), len(centres)), dtype=np.float64)
    for start in range(0, len(pixels), _CHUNK):
        block = pixels[start:start + _CHUNK]
        out[start:start + _CHUNK] = np.linalg.norm(block[:, None] - centres[None], axis=-1)
    return out


def _nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(_distances(pixels, centres), axis=1)


def _modes(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each centre moved to the commonest exact colour among its pixels: the colour the guide
    was painted with (a JPEG keeps it inside flat areas), which messages then name."""
    assign = _nearest(pixels, centres)
    out = centres.copy()
    for k in range(len(centres)):
        members = pixels[assign == k]
        if len(members):
            colours, counts = np.unique(members, axis=0, return_counts=True)
            out[k] = colours[np.argmax(counts)]
    return out


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
    dist = _distances(rgb.reshape(-1, 3), np.asarray(colours, dtype=np.float64))
    nearest = np.argmin(dist, axis=-1)
    out = np.where(np.min(dist, axis=-1) <= max_distance, nearest, -1)
    return out.reshape(rgb.shape[:2])


def region_labels(image: Image.Image, colours: np.ndarray, max_distance: float = MAX_DISTANCE,
                  band: int = BORDER_BAND) -> np.ndarray:
    """``labels``, cleaned of border noise: unlabelled pixels in bands narrower than about
    ``band`` px (the smeared edge between two regions of a JPEG or anti-aliased guide) take
    their nearest palette colour; unlabelled areas that are wider (a colour of the guide
    that is not a region) stay -1."""
    out = labels(image, colours, max_distance)
    unlabelled = out == -1
    if not unlabelled.any():
        return out
    mask = Image.fromarray(unlabelled.astype(np.uint8) * 255)
    opened = np.asarray(mask.filter(ImageFilter.MinFilter(band)).filter(ImageFilter.MaxFilter(band))) > 0
    noise = unlabelled & ~opened
    if noise.any():
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64)[noise]
        out[noise] = _nearest(rgb, np.asarray(colours, dtype=np.float64))
    return out


def resize_labels(labels_: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map (H, W) int (-1 = no region) resized to (width, height), nearest neighbour
    (so that no label is invented on a border)."""
    if (labels_.shape[1], labels_.shape[0]) == tuple(size):
        return labels_
    image = Image.fromarray((labels_ + 1).astype(np.uint8))
    return np.asarray(image.resize(tuple(size), Image.Resampling.NEAREST)).astype(np.int64) - 1


@dataclass(frozen=True)
class RegionPairs:
    """Matched colours: content_colours[i] pairs with style_colours[i] (RGB 0-255)."""

    content_colours: np.ndarray  # (R, 3)
    style_colours: np.ndarray  # (R, 3)


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


def _aspect_matches(guide: tuple[int, int], image: tuple[int, int]) -> bool:
    """Whether a guide of (width, height) ``guide`` can be stretched onto ``image``: the
    same aspect ratio to within 2 %, or to within a pixel of rounding at either size."""
    (gw, gh), (iw, ih) = guide, image
    if abs(np.log((gw / gh) / (iw / ih))) <= 0.02:
        return True
    small, big = sorted([(gw, gh), (iw, ih)], key=lambda s: s[0] * s[1])
    factor = max(big) / max(small)
    return all(abs(s * factor - b) <= factor for s, b in zip(small, big))


def _shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    """A guide no larger than max_side on its long side (nearest neighbour: no new colours);
    labelling a 12-megapixel guide for a 512 px run would only cost time."""
    if max_side is None or max(image.size) <= max_side:
        return image
    factor = max_side / max(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.NEAREST)


class Guides:
    """A pair of region guides, paired and labelled once at full size.

    ``content_labels`` and ``style_labels`` are (H, W) int maps at the guides' sizes:
    region index, or -1 for no region (``region_labels``). ``at(content_size, style_size)``
    gives the region masks at a scale's working sizes (label maps resized nearest-neighbour,
    which is the same as resizing the guides nearest-neighbour and labelling them)."""

    def __init__(self, content_guide: Image.Image, style_guide: Image.Image,
                 max_side: int | None = 2048):
        self.content_image = content_guide.convert("RGB")
        self.style_image = style_guide.convert("RGB")
        content, style = (_shrink(image, max_side) for image in (self.content_image, self.style_image))
        self.pairs = pair_guides(content, style)
        self.content_labels = region_labels(content, self.pairs.content_colours)
        self.style_labels = region_labels(style, self.pairs.style_colours)
        missing = [i for i in range(len(self)) if not np.any(self.content_labels == i)
                   or not np.any(self.style_labels == i)]
        if missing:  # a palette colour always has pixels; kept as a guard
            raise GuideError("guides do not pair up: colours " + ", ".join(
                _hex(self.pairs.content_colours[i]) for i in missing) + " cover no pixels")

    def __len__(self) -> int:
        return len(self.pairs.content_colours)

    def describe(self) -> str:
        return ", ".join(f"{_hex(c)}~{_hex(s)}" if _hex(c) != _hex(s) else _hex(c)
                         for c, s in zip(self.pairs.content_colours, self.pairs.style_colours))

    def check_shapes(self, content_size: tuple[int, int], style_size: tuple[int, int],
                     names: tuple[str, str] = ("content guide", "style guide")) -> None:
        """GuideError unless each guide has the shape of its image (any resolution)."""
        for name, guide, size, what in ((names[0], self.content_image.size, content_size, "content"),
                                         (names[1], self.style_image.size, style_size, "style")):
            if not _aspect_matches(guide, size):
                raise GuideError(f"{name}: the guide is {guide[0]}x{guide[1]} px and the {what} "
                                 f"image {size[0]}x{size[1]} px; a guide must have its image's "
                                 f"aspect ratio")

    def at(self, content_size: tuple[int, int], style_size: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
        """(content labels, style labels) resized to (width, height) working sizes."""
        return resize_labels(self.content_labels, content_size), \
            resize_labels(self.style_labels, style_size)

    def masks_at(self, content_size: tuple[int, int], style_size: tuple[int, int],
                 min_pixels: int = 16) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], np.ndarray]:
        """The regions at a scale: ([(index, content mask, style mask)], rest mask).

        A region with fewer than ``min_pixels`` pixels on either side at this size is left
        out and its content pixels join the rest (the pixels of no region), which the
        caller compares with the whole style."""
        content, style = self.at(content_size, style_size)
        regions, rest = [], content == -1
        for i in range(len(self)):
            c, s = content == i, style == i
            if np.count_nonzero(c) < min_pixels or np.count_nonzero(s) < min_pixels:
                rest |= c
            else:
                regions.append((i, c, s))
        return regions, rest


def colour_map(labels_: np.ndarray, colours: np.ndarray, rest=(255, 255, 255)) -> Image.Image:
    """A label map drawn in its palette colours (``rest`` where no region): what the
    guides were understood as."""
    table = np.vstack([np.asarray(rest, dtype=np.float64)[None], np.asarray(colours)])
    return Image.fromarray(np.clip(np.rint(table[labels_ + 1]), 0, 255).astype(np.uint8))
