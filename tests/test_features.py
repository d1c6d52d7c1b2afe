"""The ONNX forward maps and VJP against torch (float64 reference) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.arrays import to_numpy
from ostransfer.nets.vgg16 import FEATURE_LAYERS, LAYERS

SIZES = [(64, 64), (128, 96), (37, 45)]


def _image(kind: str, height: int, width: int, rng) -> np.ndarray:
    if kind == "random":
        return rng.random((height, width, 3), dtype=np.float32)
    # flat colour blocks: exact ties in every max-pool window inside a block
    image = np.empty((height, width, 3), np.float32)
    image[:] = (0.2, 0.5, 0.7)
    image[height // 3:, : width // 2] = (0.9, 0.1, 0.3)
    return image


def _torch_reference(vgg, image, grads):
    import torch

    x = torch.tensor(image.transpose(2, 0, 1)[None], dtype=vgg.dtype, requires_grad=True)
    maps = vgg(x)
    total = sum((maps[n] * torch.as_tensor(g, dtype=vgg.dtype)).sum() for n, g in grads.items())
    (grad,) = torch.autograd.grad(total, x)
    return {n: m.detach().numpy() for n, m in maps.items()}, grad[0].numpy().transpose(1, 2, 0)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("kind", ["random", "flat"])
@pytest.mark.parametrize("height,width", SIZES)
def test_forward_and_vjp_match_torch(device_engine, torch_vgg32, torch_vgg64, height, width,
                                     kind, rng):
    """The VJP must agree with torch autograd in float32 or, where a float32 pre-activation
    within ~1e-7 of a ReLU or max-pool kink flips, with the float64 reference. (On flat
    images float64 rounding itself can break exact pool ties differently, so float32 torch,
    which like ORT keeps the first maximum, is the reference there.)"""
    engine = device_engine
    image = _image(kind, height, width, rng)
    maps = {n: to_numpy(m).copy() for n, m in engine.forward(image).items()}
    grads = {n: rng.standard_normal(maps[n].shape, dtype=np.float32) for n in FEATURE_LAYERS}
    grad = to_numpy(engine.backward({n: engine.xp.asarray(g) for n, g in grads.items()}))
    ref_maps, ref_grad64 = _torch_reference(torch_vgg64, image, grads)
    _, ref_grad32 = _torch_reference(torch_vgg32, image, grads)
    assert set(maps) == {layer.name for layer in LAYERS}
    for name, ref in ref_maps.items():
        assert maps[name].shape == ref.shape
        assert _rel(maps[name], ref) < 1e-5, name
    assert grad.shape == (height, width, 3)
    assert min(_rel(grad, ref_grad32), _rel(grad, ref_grad64)) < 1e-4


def test_vjp_with_missing_layers_counts_them_as_zero(engine, torch_vgg64, rng):
    image = _image("random", 48, 40, rng)
    engine.forward(image)
    grads = {"relu3_1": rng.standard_normal((1, 256, 12, 10), dtype=np.float32)}
    grad = engine.backward(grads).copy()
    _, ref = _torch_reference(torch_vgg64, image, grads)
    assert _rel(grad, ref) < 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_directional_finite_difference(engine, seed):
    """No torch: <VJP(g), v> equals d/dt <g, maps(image + t v)>.

    VGG16 is piecewise linear and float32, so a finite difference is only coarse here: too
    small a step drowns in rounding, too large a one crosses ReLU kinks. On a smooth image
    and direction, h = 3e-4 lands within a few percent; a wrong formulation (unflipped
    kernels, misrouted pools, missing normalisation) is off by far more."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:40] / 16.0
    image = np.stack([0.5 + 0.3 * np.sin(yy + c) * np.cos(0.7 * xx - c) for c in range(3)],
                     -1).astype(np.float32)
    direction = np.stack([np.cos(0.5 * yy * (c + 1) + 0.3 * xx + seed) for c in range(3)],
                         -1).astype(np.float32)
    maps = engine.forward(image)
    grads = {n: rng.standard_normal(maps[n].shape).astype(np.float32) for n in FEATURE_LAYERS}
    analytic = float(np.sum(engine.backward(grads).astype(np.float64) * direction))

    def f(x):
        out = engine.forward(x)
        return sum(float(np.dot(out[n].ravel().astype(np.float64), g.ravel())) for n, g in grads.items())

    h = 3e-4
    numeric = (f(image + h * direction) - f(image - h * direction)) / (2 * h)
    assert abs(numeric - analytic) < 0.1 * abs(analytic)


def test_backward_rejects_wrong_gradient_shape(engine, rng):
    engine.forward(_image("random", 32, 32, rng))
    with pytest.raises(ValueError, match="relu1_1"):
        engine.backward({"relu1_1": np.zeros((1, 64, 16, 16), np.float32)})


def test_too_small_image_is_refused(engine):
    with pytest.raises(ValueError, match="too small"):
        engine.forward(np.zeros((8, 40, 3), np.float32))
