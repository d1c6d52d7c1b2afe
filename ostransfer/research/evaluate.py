"""``ostransfer evaluate``: independent quality measures of finished images (ours or another
implementation's), which no STROTSS loss uses, so that they can judge what optimises it.

For each image (lower is better on the first three):

- content: LPIPS (Zhang et al. 2018, AlexNet with its learned linear layers) between the image
  and the content resized to the image's size;
- style: the sliced Wasserstein distance (W1, fixed directions) between the AlexNet relu1 ..
  relu5 feature clouds of the image and of the style resized to the image's long side,
  averaged over the layers;
- colour: the same distance between the CIELAB pixel clouds of the image and of that style;
- chroma: the image's mean CIELAB chroma, beside the style's (how colourful it is).

AlexNet runs in ONNX Runtime (``nets.alexnet``); the measures are ``research.quality``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..imaging.io import load_pil, resize, scaled_size, to_array
from ..nets.alexnet import MIN_SIZE, AlexNetFeatures
from ..nets.provision import ensure_alexnet
from . import quality

MEASURES = ("content", "style", "colour")


@lru_cache(maxsize=1)
def _network() -> AlexNetFeatures:
    return AlexNetFeatures(ensure_alexnet())


def _name(item: Any, index: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"image {index + 1}"


def measure(image: Image.Image, content: Image.Image, style: Image.Image) -> dict[str, float]:
    """The measures of one RGB image against the content and the style (PIL images)."""
    if min(image.size) < MIN_SIZE:
        raise ValueError(f"the image is {image.size[0]}x{image.size[1]} px; the measures need "
                         f"at least {MIN_SIZE} px on each side")
    net = _network()
    array = to_array(image)
    maps = net.forward(array)
    content_arr = to_array(resize(content, image.size))
    style_size = scaled_size(style.size, max(image.size))
    if min(style_size) < MIN_SIZE:
        raise ValueError(f"the style at the image's long side is {style_size[0]}x"
                         f"{style_size[1]} px; the measures need at least {MIN_SIZE} px")
    style_arr = to_array(resize(style, style_size))
    return {"content": quality.lpips(maps, net.forward(content_arr), net.lins),
            "style": quality.style_distance(maps, net.forward(style_arr)),
            "colour": quality.colour_distance(array, style_arr),
            "chroma": quality.mean_chroma(array),
            "style_chroma": quality.mean_chroma(style_arr)}


def run_evaluate(content: Any, style: Any, images: Sequence[Any],
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure each image (paths, PIL images or arrays) against the content and the style.

    Returns {"measures", "images": [{"image", "size", <measure>: value, "ranks"}]}; ranks
    are 1 for the lowest content, style and colour distance among the images."""
    say = log or (lambda message: None)
    if not images:
        raise ValueError("give at least one image to evaluate")
    content_pil, style_pil = load_pil(content), load_pil(style)
    loaded = [(item, load_pil(item)) for item in images]  # fail on a bad file before the work
    rows = []
    for index, (item, pil) in enumerate(loaded):
        say(f"measuring {_name(item, index)} ({pil.size[0]}x{pil.size[1]} px)")
        rows.append({"image": _name(item, index), "size": list(pil.size),
                     **measure(pil, content_pil, style_pil)})
    for key in MEASURES:
        order = np.argsort([row[key] for row in rows], kind="stable")
        for rank, index in enumerate(order, start=1):
            rows[index].setdefault("ranks", {})[key] = rank
    return {
        "settings": {"content": str(content) if isinstance(content, (str, Path)) else None,
                     "style": str(style) if isinstance(style, (str, Path)) else None,
                     "directions": quality.DIRECTIONS, "cloud_cap": quality.CLOUD_CAP},
        "measures": {"content": "LPIPS (AlexNet) to the content at the image's size",
                     "style": "sliced W1 of AlexNet relu1-5 feature clouds to the style at "
                              "the image's long side, mean over layers",
                     "colour": "sliced W1 of CIELAB pixel clouds to that style",
                     "chroma": "mean CIELAB chroma of the image (style_chroma: of the style)"},
        "images": rows,
    }
