"""RMSprop on a Laplacian pyramid, a new sample set every step: the official code's optimiser
(docs/algorithm.md §6.2)."""

from __future__ import annotations

import numpy as np

from ..arrays import to_numpy
from ..imaging.pyramid import LaplacianPyramid
from .optimizer import Callback, ObjectiveLike, RoundCallback, RoundRng, Step, check_finite, round_rng


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
    generator = round_rng(rng, round_index)
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
            generator = round_rng(rng, round_index)
            if on_round is not None:
                state = {f"band_{i}": b.copy() for i, b in enumerate(bands)}  # updated in place
                state.update({f"square_{i}": q.copy() for i, q in enumerate(square)})
                state["image"] = np.clip(pyramid.reconstruct(bands), 0.0, 1.0).astype(np.float32)
                on_round(round_index, step, state)
    return np.clip(pyramid.reconstruct(bands), 0.0, 1.0).astype(np.float32)
