"""The whole objective (engine + sampler + losses) against torch autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.method import losses
from ostransfer.method.objective import Objective, style_hypercolumns
from ostransfer.method.sampling import grid_locations

H, W = 48, 64


def _images(rng):
    yy, xx = np.mgrid[0:H, 0:W]
    content = np.stack([0.5 + 0.4 * np.sin(yy / 5 + c) * np.cos(xx / 7 - c) for c in range(3)],
                       -1).astype(np.float32)
    style = rng.random((40, 56, 3), dtype=np.float32)
    image = np.clip(content + 0.1 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
    return content, style, image


def _objective(engine, preset, weight, rng, samples=256, color=0.0):
    content, style, image = _images(rng)
    columns = style_hypercolumns(engine, style, preset, 300, rng).copy()
    objective = Objective(engine, content, losses.style_target(columns), preset, weight, samples,
                          color_weight=color)
    ys, xs = grid_locations(H, W, samples, rng)
    objective.set_locations(ys, xs)
    return objective, content, columns, image, ys, xs


@pytest.mark.parametrize("preset,weight,color", [("paper", 1024.0, 0.0), ("paper", 3.0, 2.0),
                                                 ("strotss", 2.0, 1.0), ("strotss", 0.5, 0.0)])
def test_objective_matches_torch_autograd(device_engine, torch_vgg64, preset, weight, color, rng):
    from ostransfer.research import torch_reference as tr
    from ostransfer.arrays import to_numpy

    objective, content, style_columns, image, ys, xs = _objective(device_engine, preset, weight,
                                                                  rng, color=color)
    style_columns = to_numpy(style_columns)
    value, grad, terms = objective(image)
    grad = to_numpy(grad).copy()
    content_columns = tr.image_hypercolumns(torch_vgg64, content.astype(np.float64), ys, xs, preset)
    ref_value, ref_grad, ref_terms = tr.objective(torch_vgg64, image.astype(np.float64),
                                                  content_columns, style_columns.astype(np.float64),
                                                  ys, xs, preset, weight, color)
    assert value == pytest.approx(ref_value, rel=1e-5)
    assert set(terms) | {"total"} == set(ref_terms)
    for name, term in terms.items():
        assert term == pytest.approx(ref_terms[name], rel=1e-4, abs=1e-9), name
    assert np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad) < 1e-4


def test_objective_is_deterministic_between_resamples(engine, rng):
    objective, _, _, image, _, _ = _objective(engine, "paper", 100.0, rng)
    first = objective(image)
    second = objective(image)
    assert first[0] == second[0]
    objective.resample(np.random.default_rng(5))
    assert objective(image)[0] != first[0]


@pytest.mark.parametrize("preset", ["paper", "strotss"])
def test_objective_directional_finite_difference(engine, preset):
    """No torch: the image gradient predicts the loss change along a smooth direction
    (float32 through VGG16, so only to a few percent; see test_features)."""
    rng = np.random.default_rng(3)
    objective, _, _, image, _, _ = _objective(engine, preset, 2.0, rng)
    yy, xx = np.mgrid[0:H, 0:W]
    direction = np.stack([np.cos(0.3 * yy * (c + 1) + 0.2 * xx) for c in range(3)], -1)
    direction = direction.astype(np.float32)
    _, grad, _ = objective(image)
    analytic = float(np.sum(grad.astype(np.float64) * direction))
    h = 1e-3
    numeric = (objective(image + h * direction)[0] - objective(image - h * direction)[0]) / (2 * h)
    assert numeric == pytest.approx(analytic, rel=0.05)


def test_guided_objective_is_the_mean_of_its_regions(engine, rng):
    from ostransfer.method.objective import Region

    content, style, image = _images(rng)
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    targets = []
    for half in (style[:, :28], style[:, 28:]):
        targets.append(losses.style_target(style_hypercolumns(engine, half, "paper", 200, rng).copy()))
    guided = Objective(engine, content, [Region(targets[0], left), Region(targets[1], ~left)],
                       "paper", 50.0)
    guided.resample(rng)
    ys = [guided.columns.ys[r] for r in guided.rows]
    xs = [guided.columns.xs[r] for r in guided.rows]
    assert all(left[y, x].all() for y, x in zip(ys[:1], xs[:1]))
    assert not left[ys[1], xs[1]].any()
    value, grad, terms = guided(image)
    grad = grad.copy()
    singles = []
    for target, y, x in zip(targets, ys, xs):
        single = Objective(engine, content, target, "paper", 50.0)
        single.set_locations(y, x)
        v, g, t = single(image)
        singles.append((v, g.copy(), t))
    assert value == pytest.approx((singles[0][0] + singles[1][0]) / 2, rel=1e-6)
    np.testing.assert_allclose(grad, (singles[0][1] + singles[1][1]) / 2, rtol=1e-4, atol=1e-9)
    assert terms["remd"] == pytest.approx((singles[0][2]["remd"] + singles[1][2]["remd"]) / 2)
