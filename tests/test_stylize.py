"""The whole pipeline at tiny sizes: both optimisers, both presets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import ostransfer
from ostransfer.files import sample_image
from ostransfer.imaging.color import transfer_palette
from ostransfer.imaging.io import load_pil
from ostransfer.imaging.pyramid import finest_band
from ostransfer.method.schedule import content_weights, initial_image, scale_sides
from ostransfer.presets import DEFAULT_COLOR_WEIGHT
from ostransfer.run.options import DEFAULT_LEARNING_RATE, Options
from ostransfer.run.style_side import palette_start

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
SMALL = dict(size=96, samples=128, style_samples=400)  # two scales: 64 and 96 px


def test_scale_schedule():
    assert scale_sides(512) == [64, 128, 256, 512]
    assert scale_sides(600) == [64, 128, 256, 512, 600]
    assert scale_sides(64) == [64]
    assert scale_sides(40) == [40]
    assert content_weights(2.0, [64, 128, 256, 512]) == [16.0, 8.0, 4.0, 2.0]
    # the weight belongs to the side, not to the scale's place: a 256 px run holds the photo
    # as the 256 px scale of a 512 px run does, a 2048 px run as futscdav/strotss's
    assert content_weights(2.0, [64, 128, 256]) == [16.0, 8.0, 4.0]
    assert content_weights(2.0, scale_sides(2048)) == [16.0, 8.0, 4.0, 2.0, 1.0, 0.5]
    assert content_weights(2.0, [64, 128, 256], at=None) == [8.0, 4.0, 2.0]  # the old rule


def test_default_budgets_fall_with_the_scale_and_rmsprop_takes_more_at_the_fine_ones():
    assert Options(size=512).budgets(4) == [120, 74, 68, 42]
    assert Options(size=2048).budgets(6) == [120, 74, 68, 42, 26, 20]
    assert Options(size=512, optimizer="lbfgs").budgets(4) == [120, 74, 45, 28]
    assert Options(size=512, evaluations=[5, 6, 7, 8]).budgets(4) == [5, 6, 7, 8]


def test_initial_image_is_style_mean_plus_content_detail(rng):
    content = rng.random((32, 48, 3), dtype=np.float32)
    mean = np.array([0.2, 0.4, 0.6], np.float32)
    start = initial_image(content, mean, None, last=False)
    assert start.shape == content.shape and start.dtype == np.float32
    assert np.abs(start.mean(axis=(0, 1)) - mean).max() < 0.05
    assert initial_image(content, mean, None, last=False, init="content") == pytest.approx(content)
    grey = np.full((16, 24, 3), 0.5, np.float32)
    upsampled = initial_image(content, mean, grey, last=True)
    assert upsampled == pytest.approx(np.full_like(content, 0.5), abs=1e-6)
    # final_detail: the last scale's start gets that fraction of the content's finest band
    detailed = initial_image(content, mean, grey, last=True, final_detail=1.0)
    assert np.array_equal(detailed, initial_image(content, mean, grey, last=False))
    half = initial_image(content, mean, grey, last=True, final_detail=0.5)
    assert half == pytest.approx(np.clip(0.5 + 0.5 * finest_band(content), 0, 1), abs=1e-6)


def _sliced_w1(a: np.ndarray, b: np.ndarray, directions: int = 64) -> float:
    """Mean 1-D Wasserstein-1 distance of two colour clouds (K, 3), (L, 3) over directions."""
    unit = np.random.default_rng(7).standard_normal((directions, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    q = (np.arange(256) + 0.5) / 256
    return float(np.mean([np.abs(np.quantile(a @ u, q) - np.quantile(b @ u, q)).mean()
                          for u in unit]))


def test_palette_start_is_the_content_in_the_style_colours(rng):
    # a smooth content (a lightness ramp with a reddish blob) and a blue/yellow "painting"
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    content = np.stack([0.3 + 0.5 * xx, 0.2 + 0.3 * xx, 0.1 + 0.2 * yy], axis=-1)
    content[10:25, 20:40, 0] += 0.2
    content = np.clip(content, 0, 1).astype(np.float32)
    blue = rng.normal([0.1, 0.2, 0.6], 0.05, (3000, 3))
    yellow = rng.normal([0.9, 0.8, 0.2], 0.05, (1000, 3))
    palette = np.clip(np.concatenate([blue, yellow]), 0, 1).astype(np.float32)
    start = transfer_palette(content, palette.reshape(40, 100, 3))
    assert start.shape == content.shape and start.dtype == np.float32
    assert np.array_equal(initial_image(content, palette.mean(axis=0), None, last=False,
                                        init="palette", recoloured=start), start)
    pixels = start.reshape(-1, 3).astype(np.float64)
    before = _sliced_w1(content.reshape(-1, 3).astype(np.float64), palette)
    after = _sliced_w1(pixels, palette)
    assert after < 0.05 * before  # the style's colour distribution...
    # ...laid out as the content: a quarter of the pixels, the light ones, turn yellow
    lightness = content.reshape(-1, 3).mean(axis=1)
    yellowish = pixels[:, 0] > 0.5
    assert 0.2 < yellowish.mean() < 0.3
    assert np.quantile(lightness[yellowish], 0.1) > np.median(lightness)
    # deterministic, and an image in the palette's own colours keeps them
    again = transfer_palette(content, palette)
    assert np.array_equal(again, start)
    same = transfer_palette(content, content)
    assert np.abs(same - content).max() < 0.02
    # weights: the yellow quarter of the palette weighing as much as the blue rest
    weights = np.concatenate([np.full(3000, 0.5 / 3000), np.full(1000, 0.5 / 1000)])
    even = transfer_palette(content, palette, weights).reshape(-1, 3)
    assert 0.45 < (even[:, 0] > 0.5).mean() < 0.55
    with pytest.raises(ValueError, match="palette"):
        initial_image(content, palette.mean(axis=0), None, last=False, init="palette")
    # several styles: each weighs its fraction
    two = palette_start(content, [blue.reshape(30, 100, 3), yellow.reshape(10, 100, 3)],
                        [0.5, 0.5]).reshape(-1, 3)
    assert 0.45 < (two[:, 0] > 0.5).mean() < 0.55


@pytest.fixture(scope="module")
def stylizer(model_dir):
    return ostransfer.Stylizer(device="cpu")


@pytest.mark.parametrize("optimizer,levels", [("lbfgs", 5), ("lbfgs", 0), ("rmsprop", 5),
                                              ("mlbfgs", 5)])
@pytest.mark.parametrize("preset", ["paper", "strotss"])
def test_pipeline_lowers_the_loss_and_is_reproducible(stylizer, optimizer, levels, preset):
    steps, budget = [], 12
    options = dict(SMALL, preset=preset, optimizer=optimizer, evaluations=budget,
                   per_round=budget, pyramid_levels=levels, seed=3)
    first = stylizer.stylize(CONTENT, STYLE, progress=steps.append, **options)
    assert isinstance(first, Image.Image) and first.mode == "RGB"
    assert max(first.size) == 96
    assert [s.side for s in steps] == [64] * budget + [96] * budget
    assert all(s.evaluation <= s.budget == budget for s in steps)
    final_scale = [s.loss for s in steps if s.side == 96]
    if optimizer in ("lbfgs", "mlbfgs"):  # one sample set per scale / monotone on each set
        assert min(final_scale) < 0.9 * final_scale[0]
    else:  # a new sample set every step: compare the ends
        assert np.mean(final_scale[-3:]) < np.mean(final_scale[:3])
    again = stylizer.stylize(CONTENT, STYLE, **options)
    assert first.tobytes() == again.tobytes()


def test_learning_rate_and_palette_weight_shape_the_result(stylizer):
    base = dict(SMALL, optimizer="rmsprop", evaluations=4, per_round=4)
    first = stylizer.stylize(CONTENT, STYLE, **base).tobytes()
    assert stylizer.stylize(CONTENT, STYLE, learning_rate=DEFAULT_LEARNING_RATE,
                            **base).tobytes() == first
    assert stylizer.stylize(CONTENT, STYLE, learning_rate=1e-2, **base).tobytes() != first
    assert stylizer.stylize(CONTENT, STYLE, palette_weight=3.0, **base).tobytes() != first
    # the colour term: on by default in strotss, off in paper; 0 turns it off
    assert Options().color == DEFAULT_COLOR_WEIGHT["strotss"] > 0
    assert Options(preset="paper").color == 0.0 == DEFAULT_COLOR_WEIGHT["paper"]
    assert stylizer.stylize(CONTENT, STYLE, color_weight=DEFAULT_COLOR_WEIGHT["strotss"],
                            **base).tobytes() == first
    assert stylizer.stylize(CONTENT, STYLE, color_weight=0.0, **base).tobytes() != first
    # the content's detail added at the last scale (of two here) too, by default
    assert stylizer.stylize(CONTENT, STYLE, final_detail=0.0, **base).tobytes() != first
    assert Options().init == "palette"
    assert stylizer.stylize(CONTENT, STYLE, init="style", **base).tobytes() != first
    assert Options(learning_rate=1e-2).step_size(last=True) == 5e-3


def test_api_accepts_arrays_and_pil_images(stylizer):
    content = np.asarray(load_pil(CONTENT), dtype=np.float32) / 255
    style = Image.open(STYLE)
    result = stylizer.stylize(content, style, size=64, samples=64, style_samples=200,
                              evaluations=3)
    assert result.size == (64, 43)


def test_stylize_function_and_seed_changes_result(model_dir):
    a = ostransfer.stylize(CONTENT, STYLE, device="cpu", size=64, samples=64,
                           style_samples=200, evaluations=3, seed=0)
    b = ostransfer.stylize(CONTENT, STYLE, device="cpu", size=64, samples=64,
                           style_samples=200, evaluations=3, seed=1)
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("bad,message", [
    (dict(preset="nope"), "unknown preset"),
    (dict(optimizer="adam"), "unknown optimizer"),
    (dict(content_weight=float("nan")), "positive"),
    (dict(content_weight=-1.0), "positive"),
    (dict(evaluations=0), "at least 1"),
    (dict(evaluations=[10, 10, 10]), "3 evaluation budgets given for 2 scales"),
    (dict(size=8), "between 16"),
    (dict(pyramid_levels=-1), "between 0 and 12"),
    (dict(pyramid_levels=2.5), "must be an integer"),
    (dict(learning_rate=0.0), "learning rate must be a positive number"),
    (dict(learning_rate="fast"), "learning rate must be a positive number"),
    (dict(palette_weight=-0.5), "palette weight must be a non-negative number"),
    (dict(palette_weight=float("inf")), "palette weight must be a non-negative number"),
    (dict(color_weight=-1.0), "color weight must be a non-negative number"),
    (dict(final_detail="yes"), "final detail must be a non-negative number"),
    (dict(final_detail=-0.5), "final detail must be a non-negative number"),
    (dict(weight_side=0), "weight side must be a positive integer or None"),
    (dict(weight_side=512.0), "weight side must be a positive integer or None"),
])
def test_invalid_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Options(**{**SMALL, **bad}).validated()


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_pyramid_variables_reconstruct_and_pull_back_the_gradient(rng, levels):
    """L-BFGS-B on a pyramid: the start reconstructs the image; the gradient w.r.t. the
    coefficients is the adjoint of the (clipped) reconstruction: a directional difference."""
    from ostransfer.method.lbfgs import PyramidCoefficients

    space = PyramidCoefficients((37, 45, 3), levels)
    image = rng.random((37, 45, 3), dtype=np.float32)
    assert np.abs(space.image(space.variables(image)) - image).max() < 1e-6
    x = space.variables(0.25 + 0.5 * image)  # inside [0, 1]: no clipping nearby
    grad = rng.standard_normal((37, 45, 3)).astype(np.float32)
    step = 1e-3 * rng.standard_normal(x.size)
    change = float(np.sum(grad.astype(np.float64) * (space.image(x + step) - space.image(x - step)))) / 2
    space.image(x)
    assert space.gradient(grad) @ step == pytest.approx(change, rel=1e-3)
    space.image(space.variables(np.full((37, 45, 3), 1.5, np.float32)))  # clipped everywhere
    assert not space.gradient(grad).any()


def test_a_run_gives_the_same_bytes_on_any_number_of_threads(model_dir):
    # OpenBLAS rounds the losses' products differently on 1 and 2 threads (a recipe rerun
    # with another --threads, or a pool worker, gave other bytes); ONNX Runtime does not
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> dict[str, int]:
        return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}

    before = blas()
    from ostransfer.run.job import prepare

    # full-size sample sets (threaded products); the float32 result, before 8-bit rounding
    job = prepare(CONTENT, [STYLE], Options(size=96, evaluations=4, seed=2), device="cpu")
    results = []
    for threads in (1, 2, 3):  # the process's BLAS too, as another machine's or Ray's would be
        with threadpool_limits(threads, user_api="blas"):
            results.append(ostransfer.Stylizer(device="cpu", threads=threads).run_job(job))
    assert results[0].tobytes() == results[1].tobytes() == results[2].tobytes()
    assert {path: blas()[path] for path in before} == before  # the BLAS threads restored


def test_products_in_fixed_blocks_match_the_plain_product(rng):
    from ostransfer.method.products import BLOCK_ROWS, matmul, thread_invariant

    from threadpoolctl import threadpool_limits

    a = rng.standard_normal((3 * BLOCK_ROWS + 5, 300)).astype(np.float32)
    b = rng.standard_normal((300, 200)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):  # what each block is: a one-thread product
        blocks = np.concatenate([a[i:i + BLOCK_ROWS] @ b for i in range(0, len(a), BLOCK_ROWS)])
    made = []
    for threads in (1, 4):
        with thread_invariant(threads):
            made.append(matmul(a, b, xp=np))
            # what the blocks leave to xp.matmul: a 1-D factor, float32 @ float64
            np.testing.assert_array_equal(matmul(a, b[:, 0], xp=np), a @ b[:, 0])
            assert matmul(a, b.astype(np.float64), xp=np).dtype == np.float64
    assert made[0].tobytes() == made[1].tobytes() == blocks.tobytes()
    np.testing.assert_allclose(made[0], a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)
