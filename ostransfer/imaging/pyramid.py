"""Laplacian pyramids of float images: the optimisers' variables and the schedule's detail band.

``LaplacianPyramid`` writes an image as band-pass coefficients x = b0 + U0(b1 + U1(b2 + ...))
with bilinear upsampling U (align_corners=False, as the official code's), and gives the
adjoint of the reconstruction for gradients; ``finest_band`` is the image minus its
half-resolution blur (docs/algorithm.md §5).
"""

from __future__ import annotations

import numpy as np

from .io import resize_array


def finest_band(image: np.ndarray) -> np.ndarray:
    """The finest Laplacian band of (H, W, 3): the image minus its half-resolution blur."""
    height, width = image.shape[:2]
    half = resize_array(image, (max(1, width // 2), max(1, height // 2)))
    return image - resize_array(half, (width, height))


def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear upsampling along one axis, align_corners=False."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    matrix = np.zeros((n_out, n_in), np.float32)
    np.add.at(matrix, (np.arange(n_out), lo), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), hi), frac)
    return matrix


class LaplacianPyramid:
    """An image as `levels` band-pass coefficients: x = b0 + U0(b1 + U1(b2 + ...)).

    U_i upsamples level i+1 to level i bilinearly; each level halves the size (at least 1)."""

    def __init__(self, height: int, width: int, levels: int = 5):
        self.sizes = [(height, width)]
        for _ in range(levels - 1):
            h, w = self.sizes[-1]
            self.sizes.append((max(1, h // 2), max(1, w // 2)))
        self.up = [(_upsample_matrix(h, hn), _upsample_matrix(w, wn))
                   for (h, w), (hn, wn) in zip(self.sizes, self.sizes[1:])]

    def _upsample(self, i: int, x: np.ndarray) -> np.ndarray:
        uy, ux = self.up[i]
        return np.einsum("ab,bcd,ec->aed", uy, x, ux, optimize=True)

    def _downsample_adjoint(self, i: int, g: np.ndarray) -> np.ndarray:
        uy, ux = self.up[i]
        return np.einsum("ab,aed,ec->bcd", uy, g, ux, optimize=True)

    def decompose(self, image: np.ndarray) -> list[np.ndarray]:
        """(H, W, C) -> the bands, finest first (the last one is the coarsest Gaussian level)."""
        gaussians = [image]
        for h, w in self.sizes[1:]:
            gaussians.append(resize_array(gaussians[-1], (w, h)))
        bands = [g - self._upsample(i, gn) for i, (g, gn) in enumerate(zip(gaussians, gaussians[1:]))]
        return bands + [gaussians[-1]]

    def reconstruct(self, bands: list[np.ndarray]) -> np.ndarray:
        x = bands[-1]
        for i in range(len(bands) - 2, -1, -1):
            x = bands[i] + self._upsample(i, x)
        return x

    def gradient(self, grad: np.ndarray) -> list[np.ndarray]:
        """dloss/dbands from dloss/dimage (the adjoint of reconstruct)."""
        grads = [grad]
        for i in range(len(self.sizes) - 1):
            grads.append(self._downsample_adjoint(i, grads[-1]))
        return grads
