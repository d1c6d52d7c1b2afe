"""``ostransfer score``: the objective's terms for finished images, on one fixed yardstick.

Every image is resized to the content's size at ``size`` and read at one large, seeded
sample set: N output/content locations (default 4096, four times an optimisation step's)
and M style hypercolumns (default 20000, four times a step's). With the same content,
style, size, preset, N, M and seed, the sample set is the same for every image, so outputs
of different implementations and settings can be ranked on the same numbers. Lower is
better for every term; the unmodified content image has a content term of exactly 0.
The `paper` preset's content term scales like 1/N (its |A^X - A^C| entries are of order
1/N and it averages them over N^2), so compare scores only at the same N; its default
content weight here is therefore the preset's times N / 1024, which weighs content in the
total as an optimisation step (N = 1024) at the default weight does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..arrays import resolve_device
from ..imaging.io import load_pil, resize, scaled_size, to_array
from ..method import losses
from ..method.objective import style_hypercolumns
from ..method.sampling import Hypercolumns, grid_locations
from ..nets.engine import VGGFeatures
from ..nets.vgg16 import hypercolumn_dim
from ..presets import DEFAULT_PRESET, balanced_weight, check_preset

SCORE_SAMPLES = 4096
SCORE_STYLE_SAMPLES = 20000
SCORE_SIZE = 512
TERMS = ("content", "moment", "remd", "palette")


class _Yardstick:
    """One seeded sample set on images of the content's size: N output/content locations and
    M style hypercolumns; ``terms(image)`` reads an image there."""

    def __init__(self, content: np.ndarray, style: np.ndarray, preset: str, weight: float,
                 samples: int, style_samples: int, seed: int, device: str):
        self.engine, self.preset, self.weight = _engine(device), preset, weight
        xp = self.engine.xp
        height, width = content.shape[:2]
        rng = np.random.default_rng(seed)
        self.style = losses.style_target(
            style_hypercolumns(self.engine, xp.asarray(style), preset, style_samples, rng))
        ys, xs = grid_locations(height, width, samples, rng)
        self.samples = len(ys)
        self.columns = Hypercolumns.for_preset(ys, xs, height, width, preset, xp=xp)
        self.content = losses.content_target(self._hypercolumns(content))

    def _hypercolumns(self, array: np.ndarray):
        image = self.engine.xp.asarray(array)
        return self.columns.gather(image, self.engine.forward(image))  # a new (N, D) array

    def terms(self, array: np.ndarray) -> tuple[float, dict[str, float]]:
        """(the preset's total at the yardstick's weight, the unweighted terms) of an image."""
        value, _, terms = losses.total_loss(self._hypercolumns(array), self.content, self.style,
                                            self.preset, self.weight)
        return float(value), {k: float(terms[k]) for k in TERMS}


def run_score(content: Any, style: Any, images: Sequence[Any], size: int = SCORE_SIZE,
              preset: str = DEFAULT_PRESET, content_weight: float | None = None,
              samples: int = SCORE_SAMPLES, style_samples: int = SCORE_STYLE_SAMPLES,
              seed: int = 0, device: str = "cpu",
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score each image against content and style (paths, PIL images or arrays).

    Returns {"settings", "images": [{"image", "terms", "total", "ranks"}], "notes"}: terms
    unweighted (content l_c, moment l_m, remd l_r, palette l_p), total the preset's weighted
    sum at the content weight, ranks 1 = lowest. The default content weight is the preset's,
    for `paper` times N / 1024 (the balance of a default run, see the module docstring)."""
    say = log or (lambda message: None)
    weight = _checked(preset, size, samples, style_samples, images, content_weight)
    device = resolve_device(device)
    content_pil, style_pil = load_pil(content), load_pil(style)
    width, height = target_size = scaled_size(content_pil.size, size)
    if min(width, height) < 16:
        raise ValueError(f"the content at {size} px is {width}x{height}: VGG16 needs 16 px a side")
    loaded = [(item, load_pil(item)) for item in images]  # fail on a bad file before the work

    say(f"scoring {len(loaded)} image(s) at {width}x{height} px, N = {samples}, M = {style_samples}")
    judge = _Yardstick(to_array(resize(content_pil, target_size)),
                       to_array(resize(style_pil, scaled_size(style_pil.size, size))), preset,
                       weight, samples, style_samples, seed, device)
    rows, notes = [], []
    content_aspect = content_pil.size[0] / content_pil.size[1]
    for item, pil in loaded:
        name = str(item) if isinstance(item, (str, Path)) else f"image {len(rows) + 1}"
        if abs(pil.size[0] / pil.size[1] / content_aspect - 1) > 0.02:
            notes.append(f"{name}: aspect ratio {pil.size[0]}x{pil.size[1]} differs from the "
                         f"content's; it was stretched to {width}x{height}")
        total, terms = judge.terms(to_array(resize(pil, target_size)))
        rows.append({"image": name, "size": list(pil.size), "terms": terms, "total": total})
    if preset == "paper":
        notes.append(_balance_note(judge.samples, weight, content_weight is None))
    _rank(rows)
    return {
        "settings": {"content": str(content) if isinstance(content, (str, Path)) else None,
                     "style": str(style) if isinstance(style, (str, Path)) else None,
                     "size": size, "width": width, "height": height, "preset": preset,
                     "content_weight": weight, "samples": judge.samples,
                     "style_samples": style_samples, "seed": seed,
                     "dim": hypercolumn_dim(preset), "device": device},
        "images": rows,
        "notes": notes,
    }


def _checked(preset: str, size: int, samples: int, style_samples: int, images: Sequence[Any],
             content_weight: float | None) -> float:
    """The yardstick's content weight, once the settings are known to be usable."""
    check_preset(preset)
    if not 16 <= size <= 8192:
        raise ValueError(f"size must be between 16 and 8192 px, got {size}")
    if samples < 1 or style_samples < 1:
        raise ValueError("samples and style samples must be at least 1")
    if not images:
        raise ValueError("give at least one image to score")
    weight = float(content_weight) if content_weight is not None else balanced_weight(preset, samples)
    if not weight > 0:
        raise ValueError(f"content weight must be positive, got {weight}")
    return weight


def _balance_note(samples: int, weight: float, default: bool) -> str:
    balance = ("so the default content weight is the preset's times N / 1024, the balance of "
               "a default run" if default else
               f"so a = {weight:g} here weighs content as a = {weight * 1024 / samples:g} "
               f"does in an optimisation step (N = 1024)")
    return (f"the paper preset's content term is a mean over N^2 entries of order 1/N, so "
            f"it scales like 1/N: at N = {samples} it is about {samples / 1024:.3g} times "
            f"smaller than at an optimisation step's N = 1024; {balance}")


def _rank(rows: list[dict[str, Any]]) -> None:
    """Give each row its rank (1 = lowest) on every term and on the total."""
    for key in TERMS + ("total",):
        values = [row["total"] if key == "total" else row["terms"][key] for row in rows]
        order = np.argsort(values, kind="stable")
        for rank, index in enumerate(order, start=1):
            rows[index].setdefault("ranks", {})[key] = rank


@lru_cache(maxsize=1)
def _engine(device: str):
    """The VGG16 sessions, loaded once per process (scoring several times reuses them)."""
    return VGGFeatures(device=device)
