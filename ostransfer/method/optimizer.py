"""What every optimiser of one scale shares (docs/algorithm.md §6): the objective's shape, the
progress step, the stop and non-finite signals, per-round random streams.

The optimisers (``lbfgs``, ``rmsprop``) count function evaluations (one VGG forward + VJP
each), the unit of cost, and work in rounds of ``per_round`` evaluations; ``rng`` is a
Generator used throughout, or a function ``round -> Generator`` (a run whose draws depend
only on the round can stop at a round boundary, hand its state to ``on_round``, and be
continued exactly from it with ``first_round``, ``done`` and the state). Every evaluation is checked: a non-finite loss,
term or gradient raises ``NonFiniteError`` naming it, before the bad point is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Union

import numpy as np

from ..arrays import Array


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
# inside a scale (not after the last round); the optimiser does not change the state's
# arrays afterwards, so they may be kept without a copy.
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


def round_rng(rng: RoundRng, round_index: int) -> np.random.Generator:
    """The generator of a round: ``rng(round_index)``, or ``rng`` itself when it is one."""
    return rng(round_index) if callable(rng) else rng
