"""The whole pipeline at tiny sizes: both optimisers, both presets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import ostransfer
from ostransfer.api import Options
from ostransfer.cli import sample_image
from ostransfer.images import load_pil
from ostransfer.schedule import content_weights, initial_image, scale_sides

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
SMALL = dict(size=96, samples=128, style_samples=400)  # two scales: 64 and 96 px


def test_scale_schedule():
    assert scale_sides(512) == [64, 128, 256, 512]
    assert scale_sides(600) == [64, 128, 256, 512, 600]
    assert scale_sides(64) == [64]
    assert scale_sides(40) == [40]
    assert content_weights(2.0, 4) == [16.0, 8.0, 4.0, 2.0]


def test_initial_image_is_style_mean_plus_content_detail(rng):
    content = rng.random((32, 48, 3), dtype=np.float32)
    mean = np.array([0.2, 0.4, 0.6], np.float32)
    start = initial_image(content, mean, None, last=False)
    assert start.shape == content.shape and start.dtype == np.float32
    assert np.abs(start.mean(axis=(0, 1)) - mean).max() < 0.05
    assert initial_image(content, mean, None, last=False, from_content=True) == pytest.approx(content)
    upsampled = initial_image(content, mean, np.full((16, 24, 3), 0.5, np.float32), last=True)
    assert upsampled == pytest.approx(np.full_like(content, 0.5), abs=1e-6)


@pytest.fixture(scope="module")
def stylizer(model_dir):
    return ostransfer.Stylizer(device="cpu")


@pytest.mark.parametrize("optimizer,budget", [("lbfgs", 12), ("rmsprop", 12)])
@pytest.mark.parametrize("preset", ["paper", "strotss"])
def test_pipeline_lowers_the_loss_and_is_reproducible(stylizer, optimizer, budget, preset):
    steps = []
    options = dict(SMALL, preset=preset, optimizer=optimizer, evaluations=budget,
                   per_round=budget, seed=3)
    first = stylizer.stylize(CONTENT, STYLE, progress=steps.append, **options)
    assert isinstance(first, Image.Image) and first.mode == "RGB"
    assert max(first.size) == 96
    assert [s.side for s in steps] == [64] * budget + [96] * budget
    assert all(s.evaluation <= s.budget == budget for s in steps)
    final_scale = [s.loss for s in steps if s.side == 96]
    if optimizer == "lbfgs":  # one sample set per scale: a deterministic objective
        assert min(final_scale) < 0.9 * final_scale[0]
    else:  # a new sample set every step: compare the ends
        assert np.mean(final_scale[-3:]) < np.mean(final_scale[:3])
    again = stylizer.stylize(CONTENT, STYLE, **options)
    assert first.tobytes() == again.tobytes()


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
])
def test_invalid_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Options(**{**SMALL, **bad}).validated()
