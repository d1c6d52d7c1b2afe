"""Optimisers for one scale (SPEC section 6).

``lbfgs``: scipy L-BFGS-B on the pixels, bounds [0, 1], in rounds; a new sample set per
round keeps each L-BFGS-B run on a deterministic objective. ``rmsprop``: the official
code's optimiser, RMSprop on a Laplacian pyramid with a new sample set every step.
Both count function evaluations (one VGG forward + VJP each), the unit of cost.

Both work in rounds of ``per_round`` evaluations; ``rng`` is a Generator used throughout,
or a function ``round -> Generator`` (a run whose draws depend only on the round can stop
at a round boundary, hand its state to ``on_round``, and be continued exactly from it with
``first_round``, ``done`` and the state). Every evaluation is checked: a non-finite loss,
term or gradient raises ``NonFiniteError`` naming it, before the bad point is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

import numpy as np
from scipy.optimize import Bounds, minimize

Array = Any


class ObjectiveLike(Protocol):
    def resample(self, rng: np.random.Generator) -> None: ...
    def __call__(self, image: Array) -> tuple[float, Array, dict[str, float]]: ...


@dataclass
class Step:
    """What the progress callback sees after each evaluation."""

    evaluation: int  # 1-based, within the scale
    budget: int
    loss: float
    terms: dict[str, float]
    image: np.ndarray  # the evaluated image, (H, W, 3) float32 on the host


class Stop(Exception):
    """Raised by a progress callback to end the optimisation at once (e.g. on Ctrl-C)."""


Callback = Callable[[Step], None]
RoundRng = Union[np.random.Generator, Callable[[int], np.random.Generator]]
# on_round(rounds done, evaluations done, optimiser state): called at each round boundary
# inside a scale (not after the last round); the state's arrays are not copied.
RoundCallback = Callable[[int, int, dict[str, np.ndarray]], None]


class NonFiniteError(ArithmeticError):
    """An evaluation gave a non-finite loss, term or gradient; ``term`` names the culprit
    ("gradient" or "total" when every term was finite)."""

    def __init__(self, message: str, term: str, evaluation: int):
        super().__init__(message)
        self.term, self.evaluation = term, evaluation


def check_finite(value: float, terms: dict[str, float], grad: np.ndarray, evaluation: int) -> None:
    """Raise NonFiniteError if the loss, a term or the (host) gradient is not finite."""
    bad = {name: v for name, v in terms.items() if not math.isfinite(v)}
    if bad:
        good = ", ".join(f"{n} {v:.4g}" for n, v in terms.items() if n not in bad)
        culprits = ", ".join(f"the {n} term is {v}" for n, v in bad.items())
        raise NonFiniteError(f"at evaluation {evaluation} {culprits}"
                             + (f" ({good})" if good else ""), next(iter(bad)), evaluation)
    if not math.isfinite(value):
        raise NonFiniteError(f"at evaluation {evaluation} the total loss is {value} though "
                             f"every term is finite", "total", evaluation)
    finite = np.isfinite(grad)
    if not finite.all():
        count = int(grad.size - np.count_nonzero(finite))
        raise NonFiniteError(f"at evaluation {evaluation} the gradient has {count} non-finite "
                             f"values though the loss ({value:.4g}) and every term are finite",
                             "gradient", evaluation)


def _round_rng(rng: RoundRng, round_index: int) -> np.random.Generator:
    return rng(round_index) if callable(rng) else rng


def to_numpy(array: Array) -> np.ndarray:
    """A host copy of a NumPy or CuPy array."""
    return array.get() if hasattr(array, "get") else np.asarray(array)


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


class _PyramidCoefficients:
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

    def __init__(self, objective: ObjectiveLike, space: _Pixels | _PyramidCoefficients,
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
    space = _PyramidCoefficients(image.shape, levels) if levels else _Pixels(image.shape)
    counter = _Counter(objective, space, evaluations, callback, done)
    best = image.astype(np.float32)
    round_index = first_round
    while counter.count < evaluations:
        objective.resample(_round_rng(rng, round_index))
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


# -- RMSprop on a Laplacian pyramid (the official code's optimiser) -------------------------

def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear upsampling along one axis, align_corners=False."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    matrix = np.zeros((n_out, n_in), np.float32)
    np.add.at(matrix, (np.arange(n_out), lo), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), hi), frac)
    return matrix


class LaplacianPyramid:
    """An image as `levels` band-pass coefficients: x = b0 + U0(b1 + U1(b2 + ...)).

    U_i upsamples level i+1 to level i bilinearly; each level halves the size (at least 1)."""

    def __init__(self, height: int, width: int, levels: int = 5):
        self.sizes = [(height, width)]
        for _ in range(levels - 1):
            h, w = self.sizes[-1]
            self.sizes.append((max(1, h // 2), max(1, w // 2)))
        self.up = [(_upsample_matrix(h, hn), _upsample_matrix(w, wn))
                   for (h, w), (hn, wn) in zip(self.sizes, self.sizes[1:])]

    def _upsample(self, i: int, x: np.ndarray) -> np.ndarray:
        uy, ux = self.up[i]
        return np.einsum("ab,bcd,ec->aed", uy, x, ux, optimize=True)

    def _downsample_adjoint(self, i: int, g: np.ndarray) -> np.ndarray:
        uy, ux = self.up[i]
        return np.einsum("ab,aed,ec->bcd", uy, g, ux, optimize=True)

    def decompose(self, image: np.ndarray) -> list[np.ndarray]:
        from .images import resize_array

        gaussians = [image]
        for h, w in self.sizes[1:]:
            gaussians.append(resize_array(gaussians[-1], (w, h)))
        bands = [g - self._upsample(i, gn) for i, (g, gn) in enumerate(zip(gaussians, gaussians[1:]))]
        return bands + [gaussians[-1]]

    def reconstruct(self, bands: list[np.ndarray]) -> np.ndarray:
        x = bands[-1]
        for i in range(len(bands) - 2, -1, -1):
            x = bands[i] + self._upsample(i, x)
        return x

    def gradient(self, grad: np.ndarray) -> list[np.ndarray]:
        """dloss/dbands from dloss/dimage (the adjoint of reconstruct)."""
        grads = [grad]
        for i in range(len(self.sizes) - 1):
            grads.append(self._downsample_adjoint(i, grads[-1]))
        return grads


def rmsprop(objective: ObjectiveLike, image: np.ndarray, steps: int, rng: RoundRng,
            lr: float = 2e-3, decay: float = 0.99, eps: float = 1e-8, levels: int = 5,
            callback: Callback | None = None, *, per_round: int = 40, first_round: int = 0,
            done: int = 0, state: dict[str, np.ndarray] | None = None,
            on_round: RoundCallback | None = None) -> np.ndarray:
    """RMSprop on Laplacian-pyramid coefficients, a new sample set each step (torch's
    RMSprop update: v = decay v + (1 - decay) g^2; p -= lr g / (sqrt(v) + eps)).

    Rounds are `per_round` steps (they only matter for a per-round `rng` and `on_round`).
    To continue a run, pass the `state` given to `on_round` ({"band_i", "square_i"}) with
    `first_round` and `done`; `image` then only gives the size."""
    pyramid = LaplacianPyramid(image.shape[0], image.shape[1], levels)
    if state:
        bands = [np.array(state[f"band_{i}"], dtype=np.float32) for i in range(levels)]
        square = [np.array(state[f"square_{i}"], dtype=np.float32) for i in range(levels)]
    else:
        bands = pyramid.decompose(image.astype(np.float32))
        square = [np.zeros_like(b) for b in bands]
    round_index = first_round
    generator = _round_rng(rng, round_index)
    for step in range(done + 1, steps + 1):
        objective.resample(generator)
        x = pyramid.reconstruct(bands)
        clipped = np.clip(x, 0.0, 1.0).astype(np.float32)
        value, grad, terms = objective(clipped)
        grad = to_numpy(grad)
        check_finite(value, terms, grad, step)
        grad = grad * ((x >= 0) & (x <= 1))
        for band, sq, g in zip(bands, square, pyramid.gradient(grad)):
            sq *= decay
            sq += (1 - decay) * g * g
            band -= lr * g / (np.sqrt(sq) + eps)
        if callback:
            callback(Step(step, steps, value, terms, clipped))
        if step % per_round == 0 and step < steps:
            round_index += 1
            generator = _round_rng(rng, round_index)
            if on_round is not None:
                state = {f"band_{i}": b for i, b in enumerate(bands)}
                state.update({f"square_{i}": q for i, q in enumerate(square)})
                state["image"] = np.clip(pyramid.reconstruct(bands), 0.0, 1.0).astype(np.float32)
                on_round(round_index, step, state)
    return np.clip(pyramid.reconstruct(bands), 0.0, 1.0).astype(np.float32)
