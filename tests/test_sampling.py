"""Sample locations, the bilinear gather (against torch's grid_sample) and its adjoint."""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.method.sampling import Hypercolumns, grid_locations, uniform_locations
from ostransfer.nets.vgg16 import hypercolumn_layers, hypercolumn_rgb


@pytest.mark.parametrize("height,width,n", [(64, 42, 1024), (512, 341, 1024), (20, 30, 1024),
                                            (37, 45, 100)])
def test_grid_locations_are_distinct_in_bounds_and_cover_the_image(height, width, n, rng):
    ys, xs = grid_locations(height, width, n, rng)
    assert len(ys) == min(n, height * width)
    assert len(set(zip(ys.tolist(), xs.tolist()))) == len(ys)
    assert ys.min() >= 0 and xs.min() >= 0 and ys.max() < height and xs.max() < width
    # spread over the whole image, not clustered in a corner
    assert ys.max() - ys.min() > 0.7 * height and xs.max() - xs.min() > 0.7 * width


def test_grid_locations_jitter_between_draws():
    first = grid_locations(256, 256, 1024, np.random.default_rng(0))
    second = grid_locations(256, 256, 1024, np.random.default_rng(1))
    assert set(zip(*first)) != set(zip(*second))


def test_uniform_locations_shape_and_bounds(rng):
    ys, xs = uniform_locations(30, 40, 5000, rng)  # more than the pixels: each pixel once
    assert ys.shape == xs.shape == (1200,)
    assert len(set(zip(ys.tolist(), xs.tolist()))) == 1200
    ys, xs = uniform_locations(100, 100, 500, rng)
    assert len(set(zip(ys.tolist(), xs.tolist()))) == 500


def _random_maps(layers, height, width, rng):
    return {layer.name: rng.standard_normal((1, layer.channels, height >> layer.pools,
                                             width >> layer.pools)).astype(np.float32)
            for layer in layers}


@pytest.mark.parametrize("preset", ["paper", "strotss"])
@pytest.mark.parametrize("height,width", [(48, 64), (37, 45)])
def test_gather_matches_torch_grid_sample(preset, height, width, rng):
    torch = pytest.importorskip("torch")
    from ostransfer.research.torch_reference import hypercolumns

    layers = hypercolumn_layers(preset)
    image = rng.random((height, width, 3), dtype=np.float32)
    maps = _random_maps(layers, height, width, rng)
    ys, xs = grid_locations(height, width, 200, rng)
    ys[:2], xs[:2] = (0, height - 1), (width - 1, 0)  # corners exercise the clamping
    ours = Hypercolumns.for_preset(ys, xs, height, width, preset).gather(image, maps)
    ref = hypercolumns(torch.from_numpy(image), {k: torch.from_numpy(v) for k, v in maps.items()},
                       ys, xs, preset).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["paper", "strotss"])  # raw / ImageNet-normalised RGB
def test_scatter_is_the_exact_adjoint_of_gather(preset, rng):
    layers = hypercolumn_layers(preset)
    height, width = 37, 45
    ys, xs = grid_locations(height, width, 300, rng)
    columns = Hypercolumns.for_preset(ys, xs, height, width, preset)
    image = rng.random((height, width, 3)).astype(np.float32)
    maps = _random_maps(layers, height, width, rng)
    d_hyper = rng.standard_normal((len(ys), columns.dim)).astype(np.float32)
    grads = {name: np.zeros_like(m) for name, m in maps.items()}
    d_rgb = columns.scatter(d_hyper, grads)
    gathered = columns.gather(image, maps).astype(np.float64)
    rgb = hypercolumn_rgb(preset)
    if rgb is not None:  # the normalisation's offset is not part of the linear map
        gathered[:, :3] += np.divide(rgb[0], rgb[1])
    lhs = np.sum(d_hyper.astype(np.float64) * gathered)
    rhs = sum(np.sum(grads[n].astype(np.float64) * maps[n]) for n in maps)
    rhs += np.sum(d_rgb.astype(np.float64) * image[ys, xs])
    assert lhs == pytest.approx(rhs, rel=1e-5)
    columns.clear(grads)
    assert all(not g.any() for g in grads.values())
