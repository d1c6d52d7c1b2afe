"""The objective written with torch autograd, shaped like ours, for ``compare`` and ``bench``.

``TorchObjective`` composes ``torch_reference``'s functions with what is constant per scale
(the style mean and covariance) and per sample set (the content self-similarity) computed
once, as an autodiff implementation would be written for speed. This module imports torch;
only the research commands load it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..method.sampling import grid_locations
from ..nets.provision import fetch_weights
from ..nets.weights import load_vgg16_weights
from ..presets import check_preset
from . import torch_reference as tr


@lru_cache(maxsize=1)
def _weights():
    return load_vgg16_weights(fetch_weights())


@lru_cache(maxsize=4)
def load_torch_vgg(dtype: torch.dtype = torch.float32, device: str = "cpu") -> tr.TorchVGG16:
    """The torch VGG16 with the package's weights (the same file the ONNX model is made of)."""
    return tr.TorchVGG16(_weights(), dtype=dtype).to(device)


class TorchLosses:
    """The loss terms (docs/algorithm.md §4) in torch autograd (float32 or float64), with what ours precompute
    precomputed here too: the style mean and covariance once, the content self-similarity
    once per sample set (``set_content``). style_feats: S (M, D) on ``device``."""

    def __init__(self, style_feats: Any, preset: str, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu"):
        self.preset = check_preset(preset)
        self.style = torch.as_tensor(np.asarray(style_feats), dtype=dtype, device=device)
        with torch.no_grad():
            self.style_mean, self.style_cov = tr.mean_covariance(self.style)
            self.color_mean, self.color_cov = tr.mean_covariance(self.style[:, :3])
        self.content_sim: torch.Tensor | None = None

    def set_content(self, content_feats: torch.Tensor) -> None:
        """Fix the content hypercolumns C (N, D) of the current sample set."""
        with torch.no_grad():
            self.content_sim = tr.self_similarity(content_feats)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms of output hypercolumns x (N, D), as tensors."""
        if self.content_sim is None:
            raise RuntimeError("call set_content() before evaluating")
        return {"content": tr.content_loss_from_similarity(tr.self_similarity(x),
                                                           self.content_sim, self.preset),
                "moment": tr.moment_loss_from_statistics(x, self.style_mean, self.style_cov),
                "remd": tr.remd_loss(x, self.style),
                "palette": tr.palette_loss(x, self.style, self.preset),
                "color": tr.moment_loss_from_statistics(x[:, :3], self.color_mean,
                                                        self.color_cov)}


class TorchObjective:
    """The objective in torch autograd, shaped like ``method.objective.Objective``:
    ``set_locations(ys, xs)`` / ``resample(rng)`` fix a sample set, ``__call__(image)``
    returns (loss, dloss/dimage (H, W, 3) numpy, terms). Works with ``method.lbfgs.lbfgs``.

    vgg: a ``TorchVGG16`` (its dtype and device are used); content: (H, W, 3) in [0, 1];
    style_feats: S (M, D), e.g. from ``method.objective.style_hypercolumns``.
    """

    def __init__(self, vgg: tr.TorchVGG16, content: np.ndarray, style_feats: Any, preset: str,
                 content_weight: float, samples: int = 1024, color_weight: float = 0.0):
        if not content_weight > 0:
            raise ValueError("content_weight must be positive")
        self.vgg, self.preset, self.content_weight = vgg, preset, float(content_weight)
        self.color_weight = float(color_weight)
        self.losses = TorchLosses(style_feats, preset, vgg.dtype, vgg.kernels[0].device)
        self.content = np.asarray(content)
        self.height, self.width = self.content.shape[:2]
        self.samples = samples
        self.ys = self.xs = None

    def set_locations(self, ys: np.ndarray, xs: np.ndarray) -> None:
        self.ys, self.xs = np.asarray(ys), np.asarray(xs)
        self.losses.set_content(
            tr.image_hypercolumns(self.vgg, self.content, self.ys, self.xs, self.preset))

    def resample(self, rng: np.random.Generator) -> None:
        self.set_locations(*grid_locations(self.height, self.width, self.samples, rng))

    def __call__(self, image: Any) -> tuple[float, np.ndarray, dict[str, float]]:
        if self.ys is None:
            raise RuntimeError("call resample() or set_locations() before evaluating")
        img = torch.tensor(np.asarray(image), dtype=self.vgg.dtype,
                           device=self.vgg.kernels[0].device, requires_grad=True)
        with torch.enable_grad():
            maps = self.vgg(img.permute(2, 0, 1).unsqueeze(0))
            x = tr.hypercolumns(img, maps, self.ys, self.xs, self.preset)
            terms = self.losses.terms(x)
            loss = tr.combine(terms, self.preset, self.content_weight, self.color_weight)
            (grad,) = torch.autograd.grad(loss, img)
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(loss.detach())
        return values["total"], grad.detach().cpu().numpy(), values


class SameSamples:
    """Wraps an objective so that ``resample(rng)`` draws its sample set with
    ``sampling.grid_locations`` here: two wrapped objectives given identically seeded
    generators see identical sample sets, whatever their own ``resample`` does."""

    def __init__(self, objective: Any, height: int, width: int, samples: int):
        self.objective, self.height, self.width, self.samples = objective, height, width, samples

    def resample(self, rng: np.random.Generator) -> None:
        self.objective.set_locations(*grid_locations(self.height, self.width, self.samples, rng))

    def __call__(self, image: Any):
        return self.objective(image)
