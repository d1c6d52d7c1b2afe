"""An independent torch-autograd implementation of docs/algorithm.md §2-4, for checking.

The runtime of ostransfer never imports torch: it runs VGG16 in ONNX Runtime and computes
every gradient by hand. This module computes the same objective the plain way (a torch VGG16,
``grid_sample`` for the bilinear hypercolumn reads, textbook loss formulas) and lets autograd
produce dloss/dimage, so the tests and ``ostransfer compare`` can check the hand-written
gradients against it. It is deliberately written differently from the main code; use it in
float64 to settle float32 ties and kinks (ReLU masks, max-pool argmaxes, arg-mins, |.|).

Public API
----------
- ``TorchVGG16(weights, dtype=torch.float32)``: ``forward(image NCHW in [0,1])`` -> dict of all
  13 post-ReLU maps, ``relu1_1`` .. ``relu5_3``.
- ``hypercolumns(image_hwc, maps, ys, xs, preset)`` -> (N, D) tensor.
- ``image_hypercolumns(vgg, image_hwc, ys, xs, preset)`` -> (N, D) tensor, under no_grad.
- ``cosine_distance_matrix``, ``euclidean_distance_matrix``, ``remd``, ``remd_loss``,
  ``moment_loss``, ``palette_loss``, ``color_loss``, ``content_loss``, ``combine``,
  ``total_loss``.
- ``mean_covariance``, ``moment_loss_from_statistics``, ``self_similarity``,
  ``content_loss_from_similarity``: the moment and content terms from precomputed style
  statistics / self-similarity matrices (``torch_objective`` precomputes the constant ones).
- ``objective(vgg, image_hwc, content_feats, style_feats, ys, xs, preset, content_weight)``
  -> (loss float, grad (H, W, 3) numpy, terms dict of floats).

Conventions (the same as ``method.losses``): REMD's gradient takes the row branch on a
tie and the first arg-min (torch.min); the Euclidean distance (torch.cdist, no matmul
shortcut) has gradient 0 at distance 0; |.|' (0) = 0; style and content features are
constants. Images must be at least 16 px on each side (relu5_x is pooled 4 times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..nets.vgg16 import IMAGENET_MEAN, IMAGENET_STD, LAYERS, hypercolumn_layers, hypercolumn_rgb
from ..presets import check_preset

EPS = 1e-8
# keys of the terms dict (as in method.losses): l_c, l_m, l_r, l_p, l_col of docs/algorithm.md §4
TERM_NAMES = ("content", "moment", "remd", "palette", "color")

__all__ = [
    "EPS",
    "TERM_NAMES",
    "TorchVGG16",
    "color_loss",
    "combine",
    "content_loss",
    "content_loss_from_similarity",
    "cosine_distance_matrix",
    "euclidean_distance_matrix",
    "hypercolumns",
    "image_hypercolumns",
    "mean_covariance",
    "moment_loss",
    "moment_loss_from_statistics",
    "objective",
    "palette_loss",
    "remd",
    "remd_loss",
    "self_similarity",
    "total_loss",
]


# ---------------------------------------------------------------------------------------
# VGG16 (docs/algorithm.md §2)


class TorchVGG16(torch.nn.Module):
    """VGG16 ``features`` up to relu5_3, built from ``weights.load_vgg16_weights`` output.

    ``weights``: 13 (kernel OIHW, bias) numpy pairs. The weights are frozen
    (requires_grad False); ``dtype`` is torch.float32 or torch.float64.
    """

    def __init__(self, weights: Sequence[tuple[np.ndarray, np.ndarray]],
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if len(weights) != len(LAYERS):
            raise ValueError(f"expected {len(LAYERS)} conv layers, got {len(weights)}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, not {dtype}")
        self.kernels = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for layer, (kernel, bias) in zip(LAYERS, weights):
            kernel = np.asarray(kernel)
            bias = np.asarray(bias)
            if kernel.shape[0] != layer.channels or kernel.shape[2:] != (3, 3):
                raise ValueError(f"{layer.name}: unexpected kernel shape {kernel.shape}")
            self.kernels.append(torch.nn.Parameter(
                torch.as_tensor(kernel, dtype=dtype).clone(), requires_grad=False))
            self.biases.append(torch.nn.Parameter(
                torch.as_tensor(bias, dtype=dtype).clone(), requires_grad=False))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1))

    @property
    def dtype(self) -> torch.dtype:
        return self.kernels[0].dtype

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image: (B, 3, H, W) in [0, 1] -> {relu name: (B, C, H / 2^k, W / 2^k) map}."""
        min_side = 2 ** LAYERS[-1].pools
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) image, got shape {tuple(image.shape)}")
        if min(image.shape[-2:]) < min_side:
            raise ValueError(f"image sides must be at least {min_side} px, got {tuple(image.shape[-2:])}")
        h = (image - self.mean) / self.std
        pools = 0
        maps: dict[str, torch.Tensor] = {}
        for layer, kernel, bias in zip(LAYERS, self.kernels, self.biases):
            while pools < layer.pools:
                h = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=False)
                pools += 1
            h = F.relu(F.conv2d(h, kernel, bias, stride=1, padding=1))
            maps[layer.name] = h
        return maps


# ---------------------------------------------------------------------------------------
# Hypercolumns (docs/algorithm.md §2, §3)


def _index_tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.long).reshape(-1)


def hypercolumns(image_hwc: torch.Tensor, maps: dict[str, torch.Tensor], ys: Any, xs: Any,
                 preset: str) -> torch.Tensor:
    """(N, D) hypercolumns at integer pixels (ys, xs).

    image_hwc: (H, W, 3) tensor (the RGB channels are read from it, normalised as the preset says, so gradients flow to
    it directly); maps: the VGG output for that image (batch 1). Each preset layer's map,
    pooled k times, is read bilinearly at ((y + 0.5) / 2^k - 0.5, (x + 0.5) / 2^k - 0.5),
    clamped to the map (grid_sample, border padding, align_corners=False).
    """
    layers = hypercolumn_layers(preset)
    yi = _index_tensor(ys).to(image_hwc.device)
    xi = _index_tensor(xs).to(image_hwc.device)
    if yi.shape != xi.shape:
        raise ValueError("ys and xs must have the same length")
    columns = [image_hwc[yi, xi, :]]
    rgb = hypercolumn_rgb(preset)
    if rgb is not None:
        mean, std = (torch.tensor(v, dtype=image_hwc.dtype, device=image_hwc.device) for v in rgb)
        columns = [(columns[0] - mean) / std]
    dtype = image_hwc.dtype
    yf = yi.to(dtype)
    xf = xi.to(dtype)
    for layer in layers:
        fmap = maps[layer.name]
        if fmap.shape[0] != 1:
            raise ValueError("hypercolumns reads maps of batch size 1")
        h, w = fmap.shape[-2:]
        scale = float(2 ** layer.pools)
        uy = (yf + 0.5) / scale - 0.5
        ux = (xf + 0.5) / scale - 0.5
        gy = (2.0 * uy + 1.0) / h - 1.0
        gx = (2.0 * ux + 1.0) / w - 1.0
        grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(fmap.dtype)
        sampled = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border",
                                align_corners=False)  # (1, C, 1, N)
        columns.append(sampled[0, :, 0, :].transpose(0, 1))
    return torch.cat(columns, dim=1)


def _image_tensor(vgg: TorchVGG16, image_hwc: Any, requires_grad: bool = False) -> torch.Tensor:
    device = vgg.kernels[0].device
    if isinstance(image_hwc, torch.Tensor):
        img = image_hwc.detach().to(device=device, dtype=vgg.dtype).clone()
    else:
        img = torch.tensor(np.asarray(image_hwc), dtype=vgg.dtype, device=device)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {tuple(img.shape)}")
    return img.requires_grad_(requires_grad)


def image_hypercolumns(vgg: TorchVGG16, image_hwc: Any, ys: Any, xs: Any,
                       preset: str) -> torch.Tensor:
    """(N, D) hypercolumns of an (H, W, 3) image (numpy or tensor), without gradients."""
    with torch.no_grad():
        img = _image_tensor(vgg, image_hwc)
        maps = vgg(img.permute(2, 0, 1).unsqueeze(0))
        return hypercolumns(img, maps, ys, xs, preset)


# ---------------------------------------------------------------------------------------
# Losses (docs/algorithm.md §4)


def cosine_distance_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """d_cos(a_i, b_j) = 1 - a_i.b_j / (max(|a_i|, eps) max(|b_j|, eps)), shape (len a, len b)."""
    na = torch.linalg.vector_norm(a, dim=1).clamp_min(eps)
    nb = torch.linalg.vector_norm(b, dim=1).clamp_min(eps)
    return 1.0 - (a @ b.T) / (na[:, None] * nb[None, :])


def euclidean_distance_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|_2, computed from differences (not the |a|^2 + |b|^2 - 2ab shortcut)."""
    return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")


def remd(dist: torch.Tensor) -> torch.Tensor:
    """max(mean_i min_j d_ij, mean_j min_i d_ij); the gradient takes the larger branch only
    (the row branch on a tie) and only the arg-min entries."""
    rows = dist.min(dim=1).values.mean()
    cols = dist.min(dim=0).values.mean()
    return rows if bool(rows >= cols) else cols


def remd_loss(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """l_r: cosine REMD over the whole hypercolumn."""
    return remd(cosine_distance_matrix(x, s))


def mean_covariance(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), covariance (D, D) with 1/N) of the rows of a (N, D)."""
    mu = a.mean(dim=0)
    centred = a - mu
    return mu, centred.T @ centred / a.shape[0]


def moment_loss_from_statistics(x: torch.Tensor, mu_s: torch.Tensor,
                                cov_s: torch.Tensor) -> torch.Tensor:
    """``moment_loss`` given the style's ``mean_covariance`` (mu_s, cov_s)."""
    d = x.shape[1]
    mu_x, cov_x = mean_covariance(x)
    return (mu_x - mu_s).abs().sum() / d + (cov_x - cov_s).abs().sum() / (d * d)


def moment_loss(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """l_m = |mu_X - mu_S|_1 / D + |Sigma_X - Sigma_S|_1 / D^2 (covariances with 1/N, 1/M)."""
    with torch.no_grad():
        mu_s, cov_s = mean_covariance(s)
    return moment_loss_from_statistics(x, mu_s, cov_s)


def palette_loss(x: torch.Tensor, s: torch.Tensor, preset: str) -> torch.Tensor:
    """l_p: REMD on the 3 raw RGB channels; `paper` Euclidean, `strotss` cos + euclid/sqrt(3)."""
    xr, sr = x[:, :3], s[:, :3]
    if check_preset(preset) == "paper":
        dist = euclidean_distance_matrix(xr, sr)
    else:
        dist = cosine_distance_matrix(xr, sr) + euclidean_distance_matrix(xr, sr) / math.sqrt(3.0)
    return remd(dist)


def color_loss(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """l_col: ``moment_loss`` of the 3 RGB channels alone."""
    return moment_loss(x[:, :3], s[:, :3])


def self_similarity(a: torch.Tensor) -> torch.Tensor:
    """A (N, N): the cosine distances between the rows of a (N, D), each column divided by
    its sum."""
    dist = cosine_distance_matrix(a, a)
    return dist / dist.sum(dim=0, keepdim=True)


def content_loss_from_similarity(sim_x: torch.Tensor, sim_c: torch.Tensor,
                                 preset: str) -> torch.Tensor:
    """``content_loss`` given the ``self_similarity`` matrices A^X and A^C."""
    n = sim_x.shape[0]
    diff = (sim_x - sim_c).abs().sum()
    return diff / (n * n) if check_preset(preset) == "paper" else diff / n


def content_loss(x: torch.Tensor, c: torch.Tensor, preset: str) -> torch.Tensor:
    """l_c: |A^X - A^C| summed, over N^2 (`paper`) or over N (`strotss`)."""
    return content_loss_from_similarity(self_similarity(x), self_similarity(c), preset)


def combine(terms: dict[str, Any], preset: str, content_weight: float,
            color_weight: float = 0.0) -> Any:
    """The preset's total from the terms content (l_c), moment (l_m), remd (l_r), palette
    (l_p) and colour (l_col, weighed by ``color_weight``), tensors or floats."""
    a, w = float(content_weight), float(color_weight)
    l_c, l_m, l_r, l_p, l_col = (terms[k] for k in TERM_NAMES)
    if check_preset(preset) == "paper":
        return (a * l_c + l_m + l_r + l_p / a + w * l_col) / (2.0 + a + 1.0 / a)
    return (a * l_c + l_r + l_m + l_p / max(a, 1.0) + w * l_col) / (a + 2.0)


def total_loss(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, preset: str,
               content_weight: float, color_weight: float = 0.0
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(L, {"content", "moment", "remd", "palette", "color"} unweighted term tensors) for
    output X, content C, style S."""
    if content_weight <= 0:
        raise ValueError("content_weight must be positive")
    c = c.detach()
    s = s.detach()
    terms = {
        "content": content_loss(x, c, preset),
        "moment": moment_loss(x, s),
        "remd": remd_loss(x, s),
        "palette": palette_loss(x, s, preset),
        "color": color_loss(x, s),
    }
    return combine(terms, preset, content_weight, color_weight), terms


# ---------------------------------------------------------------------------------------
# The objective


def _feature_tensor(vgg: TorchVGG16, feats: Any) -> torch.Tensor:
    device = vgg.kernels[0].device
    if isinstance(feats, torch.Tensor):
        return feats.detach().to(device=device, dtype=vgg.dtype)
    return torch.as_tensor(np.asarray(feats), dtype=vgg.dtype, device=device)


def objective(vgg: TorchVGG16, image_hwc: np.ndarray, content_feats: Any, style_feats: Any,
              ys: Any, xs: Any, preset: str, content_weight: float, color_weight: float = 0.0
              ) -> tuple[float, np.ndarray, dict[str, float]]:
    """Total loss of the (H, W, 3) image, its gradient dL/dimage (H, W, 3) and the terms.

    content_feats: C (N, D), the content hypercolumns at the same (ys, xs);
    style_feats: S (M, D). Computed in the dtype of ``vgg``; the gradient comes back as a
    numpy array of that dtype. terms: content, moment, remd, palette, color (unweighted)
    and total, as floats.
    """
    img = _image_tensor(vgg, image_hwc, requires_grad=True)
    c = _feature_tensor(vgg, content_feats)
    s = _feature_tensor(vgg, style_feats)
    with torch.enable_grad():
        maps = vgg(img.permute(2, 0, 1).unsqueeze(0))
        x = hypercolumns(img, maps, ys, xs, preset)
        if c.shape != x.shape:
            raise ValueError(f"content hypercolumns {tuple(c.shape)} do not match {tuple(x.shape)}")
        if s.ndim != 2 or s.shape[1] != x.shape[1]:
            raise ValueError(f"style hypercolumns {tuple(s.shape)} do not have D = {x.shape[1]}")
        loss, terms = total_loss(x, c, s, preset, content_weight, color_weight)
        (grad,) = torch.autograd.grad(loss, img)
    out_terms = {k: float(v.detach()) for k, v in terms.items()}
    out_terms["total"] = float(loss.detach())
    return float(loss.detach()), grad.detach().cpu().numpy(), out_terms
