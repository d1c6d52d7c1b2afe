"""Colour preservation: keep the content's colours in a stylised result (a post-process).

Two methods, both pure functions of float32 (H, W, 3) RGB arrays in [0, 1]:

- ``luminance``: the result's luminance with the content's chrominance (BT.601 YCbCr, full
  range). The style's brush strokes and tones stay; every pixel takes the content's hue and
  saturation at that place. Luminance-only transfer in Gatys et al., "Preserving Color in
  Neural Artistic Style Transfer" (2016), applied after the optimisation.
- ``statistics``: an affine map of the result's colours whose mean and covariance equal
  the content's (the symmetric square-root "image analogies" variant of the same paper's
  colour histogram matching). The result keeps its own colour layout, recoloured with the
  content's overall palette.

``preserve_colors(result, content, method)`` resizes the content to the result's size if
needed and clips to [0, 1].

The opposite direction, ``transfer_palette(image, palette)``, gives an image the colour
distribution of another (the style's): the ``palette`` start image of a run.
"""

from __future__ import annotations

import numpy as np

from .io import resize_array

METHODS = ("luminance", "statistics")
DEFAULT_METHOD = "luminance"

# BT.601 full range (JPEG): Y in [0, 1], Cb and Cr centred on 0
_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                      [-0.168735892, -0.331264108, 0.5],
                      [0.5, -0.418687589, -0.081312411]])
_TO_RGB = np.linalg.inv(_TO_YCBCR)


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) Y, Cb, Cr (float64; Cb and Cr in [-0.5, 0.5])."""
    return np.asarray(image, dtype=np.float64) @ _TO_YCBCR.T


def ycbcr_to_rgb(image: np.ndarray) -> np.ndarray:
    """The inverse of ``rgb_to_ycbcr`` (float64, not clipped)."""
    return np.asarray(image, dtype=np.float64) @ _TO_RGB.T


def keep_luminance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The result's luminance, the content's chrominance; both (H, W, 3) of one size."""
    ycc = rgb_to_ycbcr(result)
    ycc[..., 1:] = rgb_to_ycbcr(content)[..., 1:]
    return ycbcr_to_rgb(ycc)


def _sqrt_psd(cov: np.ndarray, eps: float, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov + eps * np.eye(len(cov)))
    values = np.maximum(values, eps)
    return (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T


def match_statistics(result: np.ndarray, content: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """The result's colours mapped affinely so that their mean and covariance are the
    content's: x -> C_c^(1/2) C_r^(-1/2) (x - mu_r) + mu_c. ``eps`` regularises flat images."""
    x = np.asarray(result, dtype=np.float64).reshape(-1, 3)
    c = np.asarray(content, dtype=np.float64).reshape(-1, 3)
    mu_x, mu_c = x.mean(axis=0), c.mean(axis=0)
    cov_x = np.cov(x - mu_x, rowvar=False, bias=True)
    cov_c = np.cov(c - mu_c, rowvar=False, bias=True)
    transform = _sqrt_psd(cov_c, eps) @ _sqrt_psd(cov_x, eps, inverse=True)
    return ((x - mu_x) @ transform.T + mu_c).reshape(np.shape(result))


def preserve_colors(result: np.ndarray, content: np.ndarray,
                    method: str = DEFAULT_METHOD) -> np.ndarray:
    """``result`` (H, W, 3) recoloured with the colours of ``content`` (any size; resized to
    the result's) by ``method`` ("luminance" or "statistics"); float32 in [0, 1]."""
    if method not in METHODS:
        raise ValueError(f"unknown colour preservation method {method!r}; choose "
                         f"{' or '.join(METHODS)}")
    result = np.asarray(result, dtype=np.float32)
    height, width = result.shape[:2]
    content = np.asarray(content, dtype=np.float32)
    if content.shape[:2] != (height, width):
        content = np.clip(resize_array(content, (width, height)), 0.0, 1.0)
    out = keep_luminance(result, content) if method == "luminance" \
        else match_statistics(result, content)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


PALETTE_ITERATIONS = 30


def _quantiles(values: np.ndarray, count: int, weights: np.ndarray | None) -> np.ndarray:
    """The ``count`` mid-rank quantiles (i + 1/2) / count of ``values`` (K,), each value
    standing for its share of ``weights`` (K,; None: equal shares), linearly interpolated."""
    order = np.argsort(values, kind="stable")
    share = np.full(len(values), 1.0 / len(values)) if weights is None else weights[order]
    at = np.cumsum(share) - share / 2  # each sorted value at the middle of its share
    return np.interp((np.arange(count) + 0.5) / count, at, values[order])


def transfer_palette(image: np.ndarray, palette: np.ndarray, weights: np.ndarray | None = None,
                     iterations: int = PALETTE_ITERATIONS, seed: int = 0) -> np.ndarray:
    """``image`` (H, W, 3) recoloured to the colour distribution of ``palette`` (..., 3).

    Iterative distribution transfer (Pitie, Kokaram and Dahyot 2005): in a random
    orthonormal basis, each coordinate of the image's pixels takes the palette's value of
    the same rank (1-D optimal transport), then the basis changes; ``iterations`` rounds
    bring the whole 3-D colour cloud to the palette's. A pixel keeps its rank along every
    axis it is moved on, so light stays lighter than dark and the layout stays. ``weights``
    (one per palette pixel, summing to 1; None: equal) weigh the palette's pixels, e.g.
    several styles by their style weights. float32, clipped to [0, 1]; deterministic for a
    ``seed`` (docs/algorithm.md §5).
    """
    shape = np.shape(image)
    x = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    y = np.asarray(palette, dtype=np.float64).reshape(-1, 3)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        basis, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        projected, target = x @ basis, y @ basis
        for axis in range(3):
            order = np.argsort(projected[:, axis], kind="stable")
            projected[order, axis] = _quantiles(target[:, axis], len(order), w)
        x = projected @ basis.T
    return np.clip(x, 0.0, 1.0).astype(np.float32).reshape(shape)
