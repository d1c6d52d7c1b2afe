"""Quality measures of a stylised image, independent of the VGG16 objective (pure NumPy).

- ``lpips``: perceptual distance to the content (LPIPS, Zhang et al. 2018, AlexNet maps);
- ``style_distance``: sliced Wasserstein distance between AlexNet feature distributions;
- ``colour_distance``: sliced Wasserstein distance between CIELAB pixel distributions;
- ``mean_chroma``: how colourful an image is.

Feature maps are those of ``ostransfer.nets.alexnet.AlexNetFeatures.forward``: five
(C, h, w) arrays, relu1..relu5. Images are (H, W, 3) sRGB arrays in [0, 1]. Every measure is
deterministic (fixed seeds) and 0 for an image against itself; the distribution measures
accept images of different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LPIPS_EPS = 1e-10  # lpips.normalize_tensor: x / (||x|| + eps)
CLOUD_CAP = 8192
DIRECTIONS = 256
# sRGB (D65) linear RGB -> CIE XYZ (IEC 61966-2-1); the white point is its row sums, so
# sRGB white is exactly L* = 100, a* = b* = 0.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = SRGB_TO_XYZ.sum(axis=1)
_DELTA = 6 / 29


def lpips(maps_a: Sequence[np.ndarray], maps_b: Sequence[np.ndarray],
          lin_weights: Sequence[np.ndarray]) -> float:
    """LPIPS between two images of the same size, from their maps.

    maps_a, maps_b: per layer (C, h, w) maps of the two images (same shapes);
    lin_weights: per layer (C,) LPIPS linear weights. Per layer: unit-normalise each
    position's C-vector (``x / (||x|| + 1e-10)``), square the difference, weight the channels,
    average over positions; sum over layers. Dimensionless, 0 for identical images.
    """
    total = 0.0
    for a, b, w in zip(maps_a, maps_b, lin_weights, strict=True):
        if a.shape != b.shape or a.shape[0] != len(w):
            raise ValueError(f"maps {a.shape} and {b.shape} with {len(w)} weights do not match")
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        na = a / (np.sqrt(np.sum(a * a, axis=0)) + LPIPS_EPS)
        nb = b / (np.sqrt(np.sum(b * b, axis=0)) + LPIPS_EPS)
        total += float(np.mean(np.tensordot(np.asarray(w, dtype=np.float64), (na - nb) ** 2,
                                            axes=(0, 0))))
    return total


def random_directions(dim: int, count: int, seed: int) -> np.ndarray:
    """(dim, count) unit columns: ``numpy.random.default_rng(seed).standard_normal((dim,
    count))``, each column divided by its norm (uniform on the sphere)."""
    directions = np.random.default_rng(seed).standard_normal((dim, count))
    return directions / np.linalg.norm(directions, axis=0)


def _quantiles(sorted_values: np.ndarray, count: int) -> np.ndarray:
    """(n, k) columns sorted ascending -> (count, k) values at the levels (i + 0.5) / count,
    reading sample j at level (j + 0.5) / n and interpolating linearly (ends held)."""
    n = len(sorted_values)
    position = np.clip((np.arange(count) + 0.5) * (n / count) - 0.5, 0, n - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    frac = (position - low)[:, None]
    return sorted_values[low] * (1 - frac) + sorted_values[high] * frac


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int = DIRECTIONS,
                       seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between point clouds a (n, d) and b (m, d).

    Both clouds are projected on the same ``random_directions(d, directions, seed)``; each
    projection's quantile function is read at max(n, m) levels (i + 0.5) / max(n, m) (exact
    sorted values when n == m, linear interpolation otherwise); the result is the mean over
    directions and levels of |quantile_a - quantile_b|, in the units of the points.

    W1 rather than W2: post-ReLU features are sparse and heavy-tailed, and W2 (a root mean
    square) would be ruled by the few largest activations (or saturated pixels); W1 weighs
    every quantile alike and is linear in a shift (a Lab cloud moved by 5 along a direction
    scores 5 there), which makes values easy to read.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"expected non-empty (n, d) and (m, d) clouds, got {a.shape}, {b.shape}")
    units = random_directions(a.shape[1], directions, seed)
    count = max(len(a), len(b))
    qa = _quantiles(np.sort(a @ units, axis=0), count)
    qb = _quantiles(np.sort(b @ units, axis=0), count)
    return float(np.mean(np.abs(qa - qb)))


def subsample(points: np.ndarray, cap: int = CLOUD_CAP, seed: int = 0) -> np.ndarray:
    """(n, d) -> at most cap rows: all when n <= cap, else the rows
    ``sorted(numpy.random.default_rng(seed).choice(n, cap, replace=False))``."""
    if len(points) <= cap:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(len(points), cap, replace=False))]


def _feature_cloud(feature_map: np.ndarray) -> np.ndarray:
    return feature_map.reshape(feature_map.shape[0], -1).T


def style_distance(maps_image: Sequence[np.ndarray], maps_style: Sequence[np.ndarray],
                   cap: int = CLOUD_CAP, directions: int = DIRECTIONS, seed: int = 0) -> float:
    """Mean over layers of the sliced W1 distance between feature clouds.

    maps_image, maps_style: per layer (C, h, w) maps (sizes may differ); each map is a cloud
    of h*w points in R^C, subsampled to ``cap`` points (``subsample``). In activation units.
    """
    distances = [
        sliced_wasserstein(subsample(_feature_cloud(x), cap, seed),
                           subsample(_feature_cloud(s), cap, seed), directions, seed)
        for x, s in zip(maps_image, maps_style, strict=True)
    ]
    return float(np.mean(distances))


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> (H, W, 3) CIELAB (D65): L* in [0, 100], a*, b* about
    [-128, 128]. Values outside [0, 1] follow the same formulas (no clipping)."""
    rgb = np.asarray(image, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92,
                      ((np.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4)
    t = (linear @ SRGB_TO_XYZ.T) / _WHITE
    f = np.where(t > _DELTA ** 3, np.cbrt(t), t / (3 * _DELTA ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_distance(image: np.ndarray, style: np.ndarray, cap: int = CLOUD_CAP,
                    directions: int = DIRECTIONS, seed: int = 0) -> float:
    """Sliced W1 distance between the CIELAB pixel clouds of two (H, W, 3) sRGB images
    (sizes may differ), each subsampled to ``cap`` pixels. In CIELAB units."""
    clouds = [subsample(rgb_to_lab(x).reshape(-1, 3), cap, seed) for x in (image, style)]
    return sliced_wasserstein(clouds[0], clouds[1], directions, seed)


def mean_chroma(image: np.ndarray) -> float:
    """Mean CIELAB chroma sqrt(a*^2 + b*^2) of an (H, W, 3) sRGB image (0 for greys)."""
    lab = rgb_to_lab(image)
    return float(np.mean(np.hypot(lab[..., 1], lab[..., 2])))
