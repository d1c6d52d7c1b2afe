"""The multi-batch L-BFGS optimiser on a synthetic objective whose sample set changes: it
lowers the objective, keeps the image in [0, 1], repeats itself for a seed and continues
exactly from the state it hands out at a sample-set boundary."""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.method.mlbfgs import mlbfgs
from ostransfer.method.optimizer import Step

SHAPE = (24, 20, 3)


class SampledQuadratic:
    """sum over a random half of the pixels of w (x - target)^2: a new half per sample set
    (like the STROTSS objective, which reads only the sampled pixels' hypercolumns). The
    target lies partly outside [0, 1], so the bounds are active."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.target = rng.uniform(-0.3, 1.3, SHAPE).astype(np.float32)
        self.weight = rng.uniform(0.5, 2.0, SHAPE).astype(np.float32)
        self.mask = np.ones(SHAPE, np.float32)

    def resample(self, rng: np.random.Generator) -> None:
        self.mask = (rng.random(SHAPE[:2]) < 0.5).astype(np.float32)[..., None].repeat(3, 2)

    def full(self, image: np.ndarray) -> float:
        """The objective over every pixel (what the sample sets estimate)."""
        return float(np.sum(self.weight * (image - self.target) ** 2))

    def __call__(self, image: np.ndarray):
        diff = image - self.target
        value = float(np.sum(self.mask * self.weight * diff * diff))
        return value, (2 * self.mask * self.weight * diff).astype(np.float32), {"q": value}


def _rounds(seed: int):
    return lambda index: np.random.default_rng([seed, index])


def _run(objective, image, budget=60, per_set=4, **kwargs):
    steps: list[Step] = []
    result = mlbfgs(objective, image, budget, per_set, _rounds(7), steps.append, levels=3,
                    **kwargs)
    return result, steps


@pytest.fixture()
def start():
    return np.full(SHAPE, 0.5, np.float32)


def test_lowers_the_objective_and_respects_the_bounds(start):
    objective = SampledQuadratic()
    result, steps = _run(objective, start)
    assert len(steps) == 60 and [s.evaluation for s in steps] == list(range(1, 61))
    assert result.dtype == np.float32 and result.shape == SHAPE
    assert result.min() >= 0.0 and result.max() <= 1.0
    assert all(s.image.min() >= 0.0 and s.image.max() <= 1.0 for s in steps)
    best = objective.full(np.clip(objective.target, 0, 1))
    assert objective.full(result) - best < 0.1 * (objective.full(start) - best)


def test_is_deterministic_for_a_seed(start):
    first, _ = _run(SampledQuadratic(), start)
    again, _ = _run(SampledQuadratic(), start)
    assert first.tobytes() == again.tobytes()


@pytest.mark.parametrize("stop_after", [1, 3])
def test_continues_exactly_from_a_sample_set_boundary(start, stop_after):
    reference, reference_steps = _run(SampledQuadratic(), start)
    saved = []

    def on_round(sets, evaluations, state):
        saved.append((sets, evaluations, {k: np.array(v) for k, v in state.items()}))

    _run(SampledQuadratic(), start, on_round=on_round)
    sets, done, state = saved[stop_after - 1]
    assert sets == stop_after and state["image"].shape == SHAPE
    assert len(state["s"]) > 0  # the curvature memory is part of the state
    resumed, steps = _run(SampledQuadratic(), start, first_round=sets, done=done, state=state)
    assert steps[0].evaluation == done + 1
    assert [s.loss for s in steps] == [s.loss for s in reference_steps[done:]]
    assert resumed.tobytes() == reference.tobytes()
