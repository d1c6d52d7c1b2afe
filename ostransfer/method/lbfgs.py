"""L-BFGS-B on one scale (docs/algorithm.md §6.1): scipy's L-BFGS-B in rounds of ``per_round``
evaluations, a new sample set per round, so that each L-BFGS-B run sees a deterministic
objective. The variables are the pixels boxed in [0, 1], or Laplacian-pyramid coefficients.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import Bounds, minimize

from ..arrays import to_numpy
from ..imaging.pyramid import LaplacianPyramid
from .optimizer import (Callback, ObjectiveLike, RoundCallback, RoundRng, Step, check_finite,
                        round_rng)


class _RoundSpent(Exception):
    """The evaluations of this round are used up (scipy may ask for more in a line search)."""


class _Pixels:
    """L-BFGS-B's variables are the pixels themselves, boxed in [0, 1]."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    @property
    def bounds(self) -> Bounds:
        return Bounds(0.0, 1.0)  # a new one per run: scipy may broadcast it in place

    def variables(self, image: np.ndarray) -> np.ndarray:
        return image.astype(np.float64).ravel()

    def image(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.shape).astype(np.float32)  # a new host array each call

    def gradient(self, grad: np.ndarray) -> np.ndarray:
        """dloss/dx from dloss/dimage of the last ``image(x)``."""
        return grad.astype(np.float64).ravel()


class PyramidCoefficients:
    """L-BFGS-B's variables are Laplacian-pyramid coefficients (a preconditioner: coarse
    bands move the whole image at once); the image is their reconstruction clipped to
    [0, 1], and the gradient of the clipped pixels is zero, as in ``rmsprop``."""

    bounds = None

    def __init__(self, shape: tuple[int, ...], levels: int):
        self.pyramid = LaplacianPyramid(shape[0], shape[1], levels)
        self.shapes = [(h, w, shape[2]) for h, w in self.pyramid.sizes]
        self.splits = np.cumsum([math.prod(s) for s in self.shapes])[:-1]

    def _bands(self, x: np.ndarray) -> list[np.ndarray]:
        return [b.reshape(s).astype(np.float32) for b, s in zip(np.split(x, self.splits), self.shapes)]

    def variables(self, image: np.ndarray) -> np.ndarray:
        bands = self.pyramid.decompose(image.astype(np.float32))
        return np.concatenate([b.ravel() for b in bands]).astype(np.float64)

    def image(self, x: np.ndarray) -> np.ndarray:
        raw = self.pyramid.reconstruct(self._bands(x))
        self._inside = (raw >= 0) & (raw <= 1)  # where the clip passes the gradient
        return np.clip(raw, 0.0, 1.0).astype(np.float32)

    def gradient(self, grad: np.ndarray) -> np.ndarray:
        """dloss/dx from dloss/dimage of the last ``image(x)``."""
        grads = self.pyramid.gradient(grad * self._inside)
        return np.concatenate([g.ravel() for g in grads]).astype(np.float64)


class _Counter:
    """Wraps the objective for scipy: flat float64 variables in, (loss, flat float64
    gradient) out; counts evaluations, remembers the best image of the current sample set."""

    def __init__(self, objective: ObjectiveLike, space: _Pixels | PyramidCoefficients,
                 budget: int, callback: Callback | None, done: int = 0):
        self.objective, self.space, self.budget, self.callback = objective, space, budget, callback
        self.count = done
        self.limit = budget  # the end of the current round
        self.best: tuple[float, np.ndarray] | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self.count >= self.limit:
            raise _RoundSpent
        image = self.space.image(x)
        value, grad, terms = self.objective(image)
        grad = to_numpy(grad)
        check_finite(value, terms, grad, self.count + 1)
        self.count += 1
        if self.best is None or value < self.best[0]:
            self.best = (value, image)
        if self.callback:
            self.callback(Step(self.count, self.budget, value, terms, image))
        return value, self.space.gradient(grad)


def lbfgs(objective: ObjectiveLike, image: np.ndarray, evaluations: int, per_round: int,
          rng: RoundRng, callback: Callback | None = None, history: int = 10, *,
          levels: int = 0, first_round: int = 0, done: int = 0,
          on_round: RoundCallback | None = None) -> np.ndarray:
    """Minimise over pixels in [0, 1] with L-BFGS-B, `per_round` evaluations per sample set.

    levels = 0: the variables are the pixels, boxed in [0, 1]; levels > 0: the coefficients
    of a Laplacian pyramid of that many levels, the image clipped to [0, 1].
    image: (H, W, 3) float32 start (to continue a run: the state's "x" after `first_round`
    rounds and `done` evaluations); returns the final (H, W, 3) float32 image. The state
    given to `on_round` is {"x": the image to start the next round from}."""
    space = PyramidCoefficients(image.shape, levels) if levels else _Pixels(image.shape)
    counter = _Counter(objective, space, evaluations, callback, done)
    best = image.astype(np.float32)
    round_index = first_round
    while counter.count < evaluations:
        objective.resample(round_rng(rng, round_index))
        counter.best = None
        counter.limit = min(counter.count + per_round, evaluations)
        try:
            minimize(counter, space.variables(best), jac=True, method="L-BFGS-B",
                     bounds=space.bounds,
                     options={"maxfun": per_round, "maxiter": per_round, "maxcor": history,
                              "ftol": 0.0, "gtol": 0.0})
        except _RoundSpent:
            pass
        # the best image evaluated on this sample set (scipy may stop mid line search)
        best = counter.best[1]
        round_index += 1
        if on_round is not None and counter.count < evaluations:
            on_round(round_index, counter.count, {"x": best})
    return best
