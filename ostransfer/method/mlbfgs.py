"""Multi-batch L-BFGS on Laplacian-pyramid coefficients (docs/algorithm.md §6.3).

The objective changes with its sample set. scipy's L-BFGS-B needs one fixed objective, so it
fits one set of locations for a whole round and forgets its curvature at the next one. This
optimiser (after Berahas, Nocedal and Takáč, "A multi-batch L-BFGS method for machine
learning", 2016) draws a new sample set every ``per_set`` iterations and keeps its memory:
each curvature pair (s, y) is formed from two gradients of the *same* sample set (the one
the step was taken on), so every pair is consistent, and the memory carries over from set to
set. A new set costs one extra evaluation (its gradient at the current point).

Iteration: direction p = -H g from the two-loop recursion (H0 = s'y / y'y of the newest
pair; the very first step is scaled so that no coefficient moves more than ``first_step``),
Armijo backtracking on the current set (at most ``backtracks`` halvings), then the pair
(s, y) is kept when s'y > 0. The variables are the coefficients of a Laplacian pyramid of
the image (the image is their reconstruction clipped to [0, 1]; clipped pixels pass no
gradient), so a step moves coarse structure and colour, not single sampled pixels.

The state at a sample-set boundary ({"z", "s", "y", "image"}: the coefficients, the curvature
pairs, the image they give) continues the run exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from ..arrays import to_numpy
from .lbfgs import PyramidCoefficients
from .optimizer import (
    Callback,
    ObjectiveLike,
    RoundCallback,
    RoundRng,
    Step,
    check_finite,
    round_rng,
)

ARMIJO = 1e-4


class _Evaluator:
    """The objective on flat float64 coefficients; counts evaluations and reports them."""

    def __init__(self, objective: ObjectiveLike, space: PyramidCoefficients, budget: int,
                 callback: Callback | None, done: int):
        self.objective, self.space, self.budget, self.callback = objective, space, budget, callback
        self.count = done

    @property
    def spent(self) -> bool:
        return self.count >= self.budget

    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(loss, gradient w.r.t. z, the image) at z."""
        image = self.space.image(z)
        value, grad, terms = self.objective(image)
        grad = to_numpy(grad)
        check_finite(value, terms, grad, self.count + 1)
        self.count += 1
        if self.callback:
            self.callback(Step(self.count, self.budget, value, terms, image))
        return value, self.space.gradient(grad), image


def _direction(g: np.ndarray, pairs: deque) -> np.ndarray:
    """-H g by the two-loop recursion over the stored (s, y, 1 / s'y), H0 = s'y / y'y of the
    newest pair."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    s, y, rho = pairs[-1]
    q *= 1.0 / (rho * float(y @ y))
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        q += (a - rho * float(y @ q)) * s
    return -q


def mlbfgs(objective: ObjectiveLike, image: np.ndarray, evaluations: int, per_set: int,
           rng: RoundRng, callback: Callback | None = None, history: int = 10, *,
           levels: int = 5, first_step: float = 0.05, backtracks: int = 3,
           first_round: int = 0, done: int = 0, state: dict[str, np.ndarray] | None = None,
           on_round: RoundCallback | None = None) -> np.ndarray:
    """Minimise with multi-batch L-BFGS, a new sample set every ``per_set`` iterations.

    image: (H, W, 3) float32 start; to continue a run pass the ``state`` handed to
    ``on_round`` at a sample-set boundary with ``first_round`` (sets done) and ``done``
    (evaluations done). Returns the last accepted (H, W, 3) float32 image."""
    space = PyramidCoefficients(image.shape, levels)
    evaluate = _Evaluator(objective, space, evaluations, callback, done)
    pairs: deque = deque(maxlen=history)
    if state:
        z = np.array(state["z"], dtype=np.float64)
        for s, y in zip(state["s"], state["y"]):
            pairs.append((s.astype(np.float64), y.astype(np.float64), 1.0 / float(s @ y)))
    else:
        z = space.variables(image)
    current = np.clip(image, 0.0, 1.0).astype(np.float32) if not state else space.image(z)
    set_index = first_round
    while not evaluate.spent:
        objective.resample(round_rng(rng, set_index))
        f, g, current = evaluate(z)
        for _ in range(per_set):
            if evaluate.spent:
                break
            z, f, g, current = _iterate(evaluate, z, f, g, current, pairs, first_step,
                                        backtracks)
        set_index += 1
        if on_round is not None and not evaluate.spent:
            on_round(set_index, evaluate.count, _state(z, pairs, current))
    return current


def _first(g: np.ndarray, first_step: float) -> np.ndarray:
    """A steepest-descent step on which no coefficient moves more than ``first_step``."""
    return -g * (first_step / max(float(np.max(np.abs(g))), 1e-30))


def _iterate(evaluate: Callable, z: np.ndarray, f: float, g: np.ndarray, current: np.ndarray,
             pairs: deque, first_step: float, backtracks: int):
    """One iteration on the current sample set: (z, f, g, image) after it."""
    p = _direction(g, pairs) if pairs else _first(g, first_step)
    slope = float(g @ p)
    if slope >= 0:  # not a descent direction (the memory disagrees with this set): restart
        pairs.clear()
        p = _first(g, first_step)
        slope = float(g @ p)
    alpha = 1.0
    for attempt in range(backtracks + 1):
        trial = z + alpha * p
        f_new, g_new, image = evaluate(trial)
        if f_new <= f + ARMIJO * alpha * slope or attempt == backtracks or evaluate.spent:
            break
        alpha *= 0.5
    if f_new > f:  # no decrease found: stay, and let the memory start over
        pairs.clear()
        return z, f, g, current
    s, y = trial - z, g_new - g
    sy = float(s @ y)
    if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
        pairs.append((s, y, 1.0 / sy))
    return trial, f_new, g_new, image


def _state(z: np.ndarray, pairs: deque, image: np.ndarray) -> dict[str, np.ndarray]:
    """What continues the run at a sample-set boundary (arrays the run no longer changes)."""
    if pairs:
        s = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
    else:
        s = y = np.zeros((0, z.size))
    return {"z": z, "s": s, "y": y, "image": image}
