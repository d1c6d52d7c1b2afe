"""The optimisers that draw new sample sets as they go (RMSprop, the default, and multi-batch
L-BFGS) on a synthetic objective whose sample set changes: each lowers the objective, keeps
the image in [0, 1], repeats itself for a seed and continues exactly from the state it hands
out at a round boundary."""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.method.mlbfgs import mlbfgs
from ostransfer.method.optimizer import Step
from ostransfer.method.rmsprop import rmsprop

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


def _run(optimizer, objective, image, budget=60, per_set=4, **kwargs):
    steps: list[Step] = []
    if optimizer == "mlbfgs":
        result = mlbfgs(objective, image, budget, per_set, _rounds(7), steps.append, levels=3,
                        **kwargs)
    else:  # RMSprop: a new set every step; rounds of per_set steps
        result = rmsprop(objective, image, budget, _rounds(7), lr=0.02, levels=3,
                         callback=steps.append, per_round=per_set, **kwargs)
    return result, steps


OPTIMIZERS = pytest.mark.parametrize("optimizer", ["rmsprop", "mlbfgs"])


@pytest.fixture()
def start():
    return np.full(SHAPE, 0.5, np.float32)


@OPTIMIZERS
def test_lowers_the_objective_and_respects_the_bounds(start, optimizer):
    objective = SampledQuadratic()
    result, steps = _run(optimizer, objective, start)
    assert len(steps) == 60 and [s.evaluation for s in steps] == list(range(1, 61))
    assert result.dtype == np.float32 and result.shape == SHAPE
    assert result.min() >= 0.0 and result.max() <= 1.0
    assert all(s.image.min() >= 0.0 and s.image.max() <= 1.0 for s in steps)
    best = objective.full(np.clip(objective.target, 0, 1))
    assert objective.full(result) - best < 0.2 * (objective.full(start) - best)


@OPTIMIZERS
def test_is_deterministic_for_a_seed(start, optimizer):
    first, _ = _run(optimizer, SampledQuadratic(), start)
    again, _ = _run(optimizer, SampledQuadratic(), start)
    assert first.tobytes() == again.tobytes()


@OPTIMIZERS
@pytest.mark.parametrize("stop_after", [1, 3])
def test_continues_exactly_from_a_round_boundary(start, optimizer, stop_after):
    reference, reference_steps = _run(optimizer, SampledQuadratic(), start)
    saved = []

    def on_round(sets, evaluations, state):
        saved.append((sets, evaluations, {k: np.array(v) for k, v in state.items()}))

    _run(optimizer, SampledQuadratic(), start, on_round=on_round)
    sets, done, state = saved[stop_after - 1]
    assert sets == stop_after and state["image"].shape == SHAPE
    if optimizer == "mlbfgs":
        assert len(state["s"]) > 0  # the curvature memory is part of the state
    resumed, steps = _run(optimizer, SampledQuadratic(), start, first_round=sets, done=done,
                          state=state)
    assert steps[0].evaluation == done + 1
    assert [s.loss for s in steps] == [s.loss for s in reference_steps[done:]]
    assert resumed.tobytes() == reference.tobytes()
