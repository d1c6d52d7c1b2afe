"""Side-by-side labelled images for sweeps and comparison figures."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .io import resize, to_pil


def labelled_row(images: list[np.ndarray], labels: list[str], height: int | None = None,
                 gap: int = 4, label_height: int = 18) -> np.ndarray:
    """Images (H, W, 3) in [0, 1] in one row with a caption under each; float (H', W', 3)."""
    height = height or max(img.shape[0] for img in images)
    tiles = []
    for img in images:
        pil = to_pil(img)
        tiles.append(resize(pil, (max(1, round(pil.width * height / pil.height)), height)))
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, height + label_height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, label in zip(tiles, labels):
        canvas.paste(tile, (x, 0))
        draw.text((x + 4, height + 3), label, fill="black")
        x += tile.width + gap
    return np.asarray(canvas, dtype=np.float32) / 255.0
