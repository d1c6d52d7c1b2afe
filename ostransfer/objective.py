"""The STROTSS objective at one scale: image -> (loss, dloss/dimage, per-term values).

``Objective`` holds what is fixed for a scale (the engine, the content image, the style
target, the preset and content weight, the dense gradient maps) and for a sample set (the
output/content locations and the content's self-similarity). One evaluation is: engine
forward, gather, losses, scatter, engine backward. The optimiser calls it thousands of times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import losses
from .features import VGGFeatures, map_shape
from .network import hypercolumn_layers
from .sampling import Hypercolumns, grid_locations, uniform_locations

Array = Any


def style_hypercolumns(engine: VGGFeatures, style: Array, preset: str, m: int,
                       rng: np.random.Generator) -> Array:
    """M hypercolumns (M, D) drawn uniformly from a style image (H, W, 3)."""
    height, width = style.shape[:2]
    ys, xs = uniform_locations(height, width, m, rng)
    columns = Hypercolumns(ys, xs, height, width, hypercolumn_layers(preset), engine.xp)
    return columns.gather(style, engine.forward(style))


class Objective:
    """STROTSS loss of an output image against a content image and a style target.

    content: (H, W, 3) float32 in [0, 1], the size of the output; style: a StyleTarget
    (hypercolumns of the style at this scale). Call ``resample`` to draw a sample set before
    evaluating; the objective is deterministic between two resamples.
    """

    def __init__(self, engine: VGGFeatures, content: Array, style: losses.StyleTarget,
                 preset: str, content_weight: float, samples: int = 1024):
        xp = engine.xp
        self.engine, self.preset, self.content_weight = engine, preset, float(content_weight)
        self.content_image = xp.asarray(content, dtype=xp.float32)
        self.style = style
        self.samples = samples
        self.layers = hypercolumn_layers(preset)
        self.height, self.width = content.shape[:2]
        self.grads = {layer.name: xp.zeros(map_shape(self.height, self.width, layer.channels,
                                                     layer.pools), dtype=xp.float32)
                      for layer in self.layers}
        self.columns: Hypercolumns | None = None
        self.content: losses.ContentTarget | None = None
        self._hyper: Array | None = None

    def resample(self, rng: np.random.Generator) -> None:
        """Draw a new output/content sample set and compute the content's self-similarity."""
        ys, xs = grid_locations(self.height, self.width, self.samples, rng)
        self.set_locations(ys, xs)

    def set_locations(self, ys: np.ndarray, xs: np.ndarray) -> None:
        """Use given output/content pixel locations (N,) as the sample set."""
        if self.columns is not None:
            self.columns.clear(self.grads)
        xp = self.engine.xp
        self.columns = Hypercolumns(ys, xs, self.height, self.width, self.layers, xp)
        content_maps = self.engine.forward(self.content_image)
        self.content = losses.content_target(self.columns.gather(self.content_image, content_maps))
        self._hyper = xp.empty((self.columns.n, self.columns.dim), dtype=xp.float32)

    def hypercolumns(self, image: Array) -> Array:
        """The output's hypercolumns (N, D) at the current sample set (keeps maps for backward)."""
        image = self.engine.xp.asarray(image, dtype=self.engine.xp.float32)
        return self.columns.gather(image, self.engine.forward(image), out=self._hyper)

    def __call__(self, image: Array) -> tuple[float, Array, dict[str, float]]:
        """image (H, W, 3) -> (loss, dloss/dimage (H, W, 3) float32, {term: value})."""
        if self.columns is None:
            raise RuntimeError("call resample() before evaluating the objective")
        hyper = self.hypercolumns(image)
        value, d_hyper, terms = losses.total_loss(hyper, self.content, self.style, self.preset,
                                                  self.content_weight)
        d_rgb = self.columns.scatter(d_hyper, self.grads)
        grad = self.engine.backward(self.grads)
        grad[self.columns.ys, self.columns.xs] += d_rgb  # sample pixels are distinct
        return float(value), grad, terms
