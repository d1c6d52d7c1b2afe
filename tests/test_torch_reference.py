"""Checks of the torch-autograd reference (ostransfer.torch_reference) itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ostransfer.nets.vgg16 import (  # noqa: E402
    IMAGENET_MEAN, IMAGENET_STD, LAYERS, hypercolumn_dim, hypercolumn_layers, hypercolumn_rgb,
)
from ostransfer.presets import PRESETS  # noqa: E402
from ostransfer.research import torch_reference as tr  # noqa: E402

@pytest.fixture(scope="module")
def weights(vgg_weights):
    return vgg_weights


@pytest.fixture(scope="module")
def vgg64(torch_vgg64):
    return torch_vgg64


def _maps(vgg, image_hwc):
    img = torch.as_tensor(image_hwc, dtype=vgg.dtype)
    with torch.no_grad():
        return img, vgg(img.permute(2, 0, 1).unsqueeze(0))


# ---------------------------------------------------------------------------------------
# network


def test_vgg_weights_frozen_and_dtype(weights):
    for dtype in (torch.float32, torch.float64):
        vgg = tr.TorchVGG16(weights, dtype=dtype)
        assert vgg.dtype == dtype
        assert all(not p.requires_grad for p in vgg.parameters())
        assert float(vgg.kernels[0][0, 0, 0, 0]) == pytest.approx(-0.5537, abs=1e-4)
        assert float(vgg.biases[0][0]) == pytest.approx(0.4034, abs=1e-4)


def test_vgg_rejects_images_smaller_than_16(vgg64):
    with pytest.raises(ValueError):
        vgg64(torch.zeros(1, 3, 15, 40, dtype=torch.float64))


def test_vgg_returns_all_relus_with_pooled_shapes(vgg64):
    rng = np.random.default_rng(0)
    image = rng.random((37, 21, 3))
    _, maps = _maps(vgg64, image)
    assert list(maps) == [layer.name for layer in LAYERS]
    for layer in LAYERS:
        k = 2 ** layer.pools
        assert tuple(maps[layer.name].shape) == (1, layer.channels, 37 // k, 21 // k)
        assert float(maps[layer.name].min()) >= 0.0


def test_relu1_1_equals_direct_conv(vgg64, weights):
    rng = np.random.default_rng(1)
    h, w = 16, 17
    image = rng.random((h, w, 3))
    _, maps = _maps(vgg64, image)
    kernel, bias = (np.asarray(a, dtype=np.float64) for a in weights[0])
    norm = (image - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    padded = np.zeros((h + 2, w + 2, 3))
    padded[1:-1, 1:-1] = norm
    expected = np.empty((64, h, w))
    for y in range(h):
        for x in range(w):
            patch = padded[y:y + 3, x:x + 3, :]  # (3, 3, Cin), kernel is (O, I, kh, kw)
            expected[:, y, x] = np.einsum("oiab,abi->o", kernel, patch) + bias
    expected = np.maximum(expected, 0.0)
    np.testing.assert_allclose(maps["relu1_1"][0].numpy(), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# hypercolumns


def test_hypercolumn_layout_and_k0_read(vgg64):
    rng = np.random.default_rng(2)
    image = rng.random((20, 24, 3))
    img, maps = _maps(vgg64, image)
    ys = np.array([0, 7, 19, 3])
    xs = np.array([0, 11, 23, 22])
    for preset in PRESETS:
        cols = tr.hypercolumns(img, maps, ys, xs, preset)
        assert tuple(cols.shape) == (4, hypercolumn_dim(preset)) == (4, 2179)
        rgb = hypercolumn_rgb(preset)  # raw, or normalised as the VGG16 input is
        expected_rgb = image[ys, xs] if rgb is None else (image[ys, xs] - rgb[0]) / rgb[1]
        np.testing.assert_allclose(cols[:, :3].numpy(), expected_rgb, rtol=1e-12, atol=1e-12)
        # relu1_1 and relu1_2 (k = 0) are read exactly at the pixel
        for offset, name in ((3, "relu1_1"), (67, "relu1_2")):
            expected = maps[name][0][:, ys, xs].T.numpy()
            np.testing.assert_allclose(cols[:, offset:offset + 64].numpy(), expected,
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(32, 48), (21, 37)])
def test_hypercolumn_equals_upsampled_map(vgg64, shape):
    """Each layer column is the map bilinearly upsampled 2^k times (align_corners=False),
    read at the pixel; rows/columns past 2^k * map size take the last upsampled one."""
    import torch.nn.functional as F

    h, w = shape
    rng = np.random.default_rng(3)
    image = rng.random((h, w, 3))
    img, maps = _maps(vgg64, image)
    ys = rng.integers(0, h, 40)
    xs = rng.integers(0, w, 40)
    ys[:2], xs[:2] = (0, h - 1), (w - 1, 0)
    for preset in PRESETS:
        cols = tr.hypercolumns(img, maps, ys, xs, preset).numpy()
        offset = 3
        for layer in hypercolumn_layers(preset):
            fmap = maps[layer.name]
            k = 2 ** layer.pools
            mh, mw = fmap.shape[-2:]
            up = F.interpolate(fmap, size=(mh * k, mw * k), mode="bilinear",
                               align_corners=False)[0]
            yy = np.minimum(ys, mh * k - 1)
            xx = np.minimum(xs, mw * k - 1)
            expected = up[:, yy, xx].T.numpy()
            got = cols[:, offset:offset + layer.channels]
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10,
                                       err_msg=f"{preset} {layer.name}")
            offset += layer.channels
        assert offset == cols.shape[1]


def test_hypercolumn_explicit_bilinear_k1(vgg64):
    rng = np.random.default_rng(4)
    image = rng.random((17, 19, 3))
    img, maps = _maps(vgg64, image)
    fmap = maps["relu2_1"][0].numpy()  # pooled once: (128, 8, 9)
    ys = np.array([0, 1, 4, 16, 15, 9])
    xs = np.array([0, 2, 5, 18, 17, 0])
    cols = tr.hypercolumns(img, maps, ys, xs, "paper").numpy()[:, 3 + 128:3 + 256]

    def read(y, x):
        c, mh, mw = fmap.shape
        u = min(max((y + 0.5) / 2 - 0.5, 0.0), mh - 1)
        v = min(max((x + 0.5) / 2 - 0.5, 0.0), mw - 1)
        y0, x0 = int(math.floor(u)), int(math.floor(v))
        y1, x1 = min(y0 + 1, mh - 1), min(x0 + 1, mw - 1)
        fy, fx = u - y0, v - x0
        return ((1 - fy) * (1 - fx) * fmap[:, y0, x0] + (1 - fy) * fx * fmap[:, y0, x1]
                + fy * (1 - fx) * fmap[:, y1, x0] + fy * fx * fmap[:, y1, x1])

    expected = np.stack([read(y, x) for y, x in zip(ys, xs)])
    np.testing.assert_allclose(cols, expected, rtol=1e-12, atol=1e-12)


def test_image_hypercolumns_no_grad(vgg64):
    rng = np.random.default_rng(5)
    image = rng.random((16, 16, 3))
    cols = tr.image_hypercolumns(vgg64, image, [1, 2], [3, 4], "strotss")
    assert not cols.requires_grad and cols.dtype == torch.float64
    img, maps = _maps(vgg64, image)
    np.testing.assert_array_equal(cols.numpy(),
                                  tr.hypercolumns(img, maps, [1, 2], [3, 4], "strotss").numpy())


# ---------------------------------------------------------------------------------------
# losses


def test_loss_terms_small_cases():
    t = torch.tensor
    x = t([[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    # identical sets: every term vanishes
    for preset in PRESETS:
        _, terms = tr.total_loss(x, x, x, preset, 1.0)
        for name, value in terms.items():
            assert abs(float(value)) < 1e-12, (preset, name)
    # cosine distance and eps
    d = tr.cosine_distance_matrix(x, t([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 4.0]],
                                       dtype=torch.float64))
    np.testing.assert_allclose(d.numpy(), [[1.0, 0.0], [1.0, 1.0]], atol=1e-12)
    # REMD is the larger of the two directed means
    dist = t([[0.0, 5.0, 3.0], [4.0, 1.0, 6.0]], dtype=torch.float64)
    # rows: mean(0, 1) = 0.5; columns: mean(0, 1, 3) = 4/3
    assert float(tr.remd(dist)) == pytest.approx(4.0 / 3.0)
    # moment loss, by hand
    a = t([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)  # mu (2, 4), cov [[1, 2], [2, 4]]
    b = t([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert float(tr.moment_loss(a, b)) == pytest.approx(6.0 / 2 + 9.0 / 4)
    # content loss: strotss is N times paper
    rng = np.random.default_rng(6)
    xx = torch.as_tensor(rng.random((7, 5)))
    cc = torch.as_tensor(rng.random((7, 5)))
    assert float(tr.content_loss(xx, cc, "strotss")) == pytest.approx(
        7 * float(tr.content_loss(xx, cc, "paper")), rel=1e-12)
    # palette: paper Euclidean, strotss cos + euclid / sqrt(3), on the RGB columns only
    p = t([[0.0, 0.0, 1.0, 9.0]], dtype=torch.float64)
    q = t([[0.0, 1.0, 0.0, -9.0]], dtype=torch.float64)
    assert float(tr.palette_loss(p, q, "paper")) == pytest.approx(math.sqrt(2.0))
    assert float(tr.palette_loss(p, q, "strotss")) == pytest.approx(1.0 + math.sqrt(2.0 / 3.0))


# ---------------------------------------------------------------------------------------
# the objective


def _problem(seed, h=20, w=24, n=16, m=20):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.1, 0.9, (h, w, 3))
    content = rng.uniform(0.0, 1.0, (h, w, 3))
    style = rng.uniform(0.0, 1.0, (h + 4, w + 2, 3))
    flat = rng.choice(h * w, n, replace=False)
    ys, xs = np.divmod(flat, w)
    sflat = rng.choice(style.shape[0] * style.shape[1], m, replace=False)
    sys_, sxs = np.divmod(sflat, style.shape[1])
    return rng, image, content, style, ys, xs, sys_, sxs


@pytest.mark.parametrize("preset,weight,color", [("paper", 16.0, 0.0), ("paper", 0.5, 1.5),
                                                 ("strotss", 2.0, 1.0), ("strotss", 0.5, 0.0)])
def test_objective_gradient_matches_finite_difference(vgg64, preset, weight, color):
    rng, image, content, style, ys, xs, sys_, sxs = _problem(7)
    c = tr.image_hypercolumns(vgg64, content, ys, xs, preset)
    s = tr.image_hypercolumns(vgg64, style, sys_, sxs, preset)
    loss, grad, terms = tr.objective(vgg64, image, c, s, ys, xs, preset, weight, color)
    assert grad.shape == image.shape and grad.dtype == np.float64
    assert set(terms) == {"content", "moment", "remd", "palette", "color", "total"}
    assert terms["total"] == loss
    # total equals the preset's formula of the terms
    a, w = weight, color
    if preset == "paper":
        expected = (a * terms["content"] + terms["moment"] + terms["remd"] + terms["palette"] / a
                    + w * terms["color"]) / (2 + a + 1 / a)
    else:
        expected = (a * terms["content"] + terms["remd"] + terms["moment"]
                    + terms["palette"] / max(a, 1) + w * terms["color"]) / (a + 2)
    assert loss == pytest.approx(expected, rel=1e-12)
    assert tr.combine(terms, preset, weight, color) == pytest.approx(loss, rel=1e-12)
    assert all(v > 0 for v in terms.values())

    direction = rng.standard_normal(image.shape)
    direction /= np.linalg.norm(direction)
    step = 1e-5
    plus = tr.objective(vgg64, image + step * direction, c, s, ys, xs, preset, weight, color)[0]
    minus = tr.objective(vgg64, image - step * direction, c, s, ys, xs, preset, weight, color)[0]
    numeric = (plus - minus) / (2 * step)
    analytic = float(np.sum(grad * direction))
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic) + 1e-12, (numeric, analytic)


def test_objective_accepts_numpy_features_and_float32(weights, vgg64):
    _, image, content, style, ys, xs, sys_, sxs = _problem(8, h=16, w=16, n=8, m=10)
    c = tr.image_hypercolumns(vgg64, content, ys, xs, "strotss").numpy()
    s = tr.image_hypercolumns(vgg64, style, sys_, sxs, "strotss").numpy()
    loss64, grad64, _ = tr.objective(vgg64, image, c, s, ys, xs, "strotss", 1.0)
    vgg32 = tr.TorchVGG16(weights, dtype=torch.float32)
    loss32, grad32, _ = tr.objective(vgg32, image.astype(np.float32), c.astype(np.float32),
                                     s.astype(np.float32), ys, xs, "strotss", 1.0)
    assert grad32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-4)
    cos = np.sum(grad32 * grad64) / (np.linalg.norm(grad32) * np.linalg.norm(grad64))
    assert cos > 0.999


def test_objective_rejects_mismatched_content(vgg64):
    _, image, content, style, ys, xs, sys_, sxs = _problem(9, h=16, w=16, n=8, m=10)
    c = tr.image_hypercolumns(vgg64, content, ys[:4], xs[:4], "paper")
    s = tr.image_hypercolumns(vgg64, style, sys_, sxs, "paper")
    with pytest.raises(ValueError):
        tr.objective(vgg64, image, c, s, ys, xs, "paper", 1.0)
