"""The options of a run (``Options``), their validation, and the one-line input error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..imaging.color import DEFAULT_METHOD as DEFAULT_COLOR_METHOD, METHODS as COLOR_METHODS
from ..method.schedule import WEIGHT_SIDE, content_weights, scale_sides
from ..method.tiles import ALIGN as TILE_ALIGN
from ..presets import (DEFAULT_COLOR_WEIGHT, DEFAULT_CONTENT_WEIGHT, DEFAULT_PRESET,
                       DEFAULT_SAMPLES, DEFAULT_STYLE_SAMPLES, check_preset)

OPTIMIZERS = ("rmsprop", "lbfgs", "mlbfgs")
INITS = ("style", "content", "palette")
MIN_SIDE = 16  # VGG16 pools four times before relu5_x: the short side needs >= 16 px
MAX_SIZE = 8192
MAX_PYRAMID_LEVELS = 12
DEFAULT_LEARNING_RATE = 2e-3  # RMSprop at every scale but the last (docs/defaults.md)
FINE_SIDE = 256  # RMSprop's default budget is 1.5 times L-BFGS's from this side on
_INTEGERS = ("size", "per_round", "pyramid_levels", "samples", "style_samples", "seed")
_AT_LEAST_ONE = ("per_round", "samples", "style_samples")


class InputError(ValueError):
    """Inputs or options a run cannot use (too small, too large for memory); one line."""


@dataclass(frozen=True)
class Options:
    """Everything that shapes a result; the defaults are the measured ones."""

    size: int = 512
    preset: str = DEFAULT_PRESET
    content_weight: float | None = None  # at a scale of weight_side px; None: the preset's default
    # the scale side (px) at which content_weight applies, doubling at each halving of the
    # side; None: at the last scale, doubling at each coarser one (the rule until 2026-12-04)
    weight_side: int | None = WEIGHT_SIDE
    optimizer: str = "rmsprop"
    evaluations: Sequence[int] | int | None = None  # per scale; None: the optimizer's default
    per_round: int = 50  # L-BFGS-B evaluations (mlbfgs: iterations) per sample set
    learning_rate: float | None = None  # RMSprop's step size (half at the last scale); None: default
    palette_weight: float | None = None  # the palette term's factor; None: the preset's
    color_weight: float | None = None  # the colour term's weight; None: the preset's default
    pyramid_levels: int = 5  # the optimiser's variables: a Laplacian pyramid of this many levels; 0: pixels
    samples: int = DEFAULT_SAMPLES  # N, output/content hypercolumns per sample set
    style_samples: int = DEFAULT_STYLE_SAMPLES  # M, style hypercolumns per scale
    # the coarsest scale's start: "style" (the style's mean colour + the content's detail),
    # "content" (the content image) or "palette" (the content in the style's colours)
    init: str = "palette"
    # how much of the content's finest band the last scale's start gets (every other finer
    # scale gets all of it); 0: the official code's start there, the coarser result alone
    final_detail: float = 0.5
    seed: int = 0
    style_weights: Sequence[float] | None = None  # one per style image; None: equal weights
    preserve_color: bool | str = False  # True, "luminance" or "statistics": keep the content's colours
    # read the VGG16 maps in tiles with cores of this many px (a multiple of 16) at scales
    # larger than one core; None: whole images (preflight chooses tiles when memory needs them)
    tile: int | None = None

    def validated(self) -> "Options":
        """self, or ValueError (one line) naming the first option that is not usable."""
        check_preset(self.preset)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        self._check_integers()
        _check_number("final detail", self.final_detail, zero=True)
        _check_weight(self.content_weight)
        if self.weight_side is not None and (isinstance(self.weight_side, bool) or not isinstance(
                self.weight_side, (int, np.integer)) or self.weight_side < 1):
            raise ValueError(f"weight side must be a positive integer or None, got "
                             f"{self.weight_side!r}")
        _check_number("learning rate", self.learning_rate, zero=False)
        _check_number("palette weight", self.palette_weight, zero=True)
        _check_number("color weight", self.color_weight, zero=True)
        if self.style_weights is not None:
            _check_style_weights(self.style_weights)
        if self.tile is not None and (isinstance(self.tile, bool)
                                      or not isinstance(self.tile, (int, np.integer))
                                      or self.tile < TILE_ALIGN or self.tile % TILE_ALIGN):
            raise ValueError(f"tile must be a multiple of {TILE_ALIGN} px, got {self.tile!r}")
        color = self.preserve_color
        if not (isinstance(color, (bool, np.bool_)) or color in COLOR_METHODS):
            raise ValueError(f"preserve color must be True, False or one of "
                             f"{', '.join(COLOR_METHODS)}, got {color!r}")
        budgets = self.budgets(len(scale_sides(self.size)))
        not_integers = [b for b in budgets
                        if isinstance(b, bool) or not isinstance(b, (int, np.integer))]
        if not_integers:
            raise ValueError(f"evaluations per scale must be integers, got {not_integers[0]!r}")
        too_few = [b for b in budgets if b < 1]
        if too_few:
            raise ValueError(f"evaluations per scale must be at least 1, got {too_few[0]}")
        return self

    def _check_integers(self) -> None:
        for name in _INTEGERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name.replace('_', ' ')} must be an integer, got {value!r}")
        if not MIN_SIDE <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be between {MIN_SIDE} and {MAX_SIZE} px, got {self.size}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")
        if not 0 <= self.pyramid_levels <= MAX_PYRAMID_LEVELS:
            raise ValueError(f"pyramid levels must be between 0 and {MAX_PYRAMID_LEVELS}, got "
                             f"{self.pyramid_levels}")
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1, got "
                                 f"{getattr(self, name)}")

    @property
    def color_method(self) -> str | None:
        """The colour preservation method, or None for none."""
        if self.preserve_color is True or self.preserve_color is np.True_:
            return DEFAULT_COLOR_METHOD
        return self.preserve_color or None

    def style_fractions(self, styles: int) -> list[float]:
        """The style weights normalised to sum to 1 (equal when not given)."""
        if self.style_weights is None:
            return [1.0 / styles] * styles
        if len(self.style_weights) != styles:
            raise InputError(f"{len(self.style_weights)} style weights given for {styles} style "
                             f"image{'s' if styles != 1 else ''}")
        total = float(sum(self.style_weights))
        return [float(w) / total for w in self.style_weights]

    @property
    def weight(self) -> float:
        """The content weight at ``weight_side``: the given one, or the preset's default."""
        return self.content_weight if self.content_weight is not None else DEFAULT_CONTENT_WEIGHT[self.preset]

    def content_weights(self, sides: Sequence[int]) -> list[float]:
        """The content weight of each scale (long sides ``sides``, px)."""
        return content_weights(self.weight, sides, self.weight_side)

    @property
    def color(self) -> float:
        """The colour term's weight: the given one, or the preset's default."""
        return float(DEFAULT_COLOR_WEIGHT[self.preset] if self.color_weight is None
                     else self.color_weight)

    def step_size(self, last: bool) -> float:
        """RMSprop's learning rate at a scale: the given one or the default, half at the last."""
        rate = DEFAULT_LEARNING_RATE if self.learning_rate is None else float(self.learning_rate)
        return rate / 2 if last else rate

    def budgets(self, scales: int) -> list[int]:
        """Evaluations (RMSprop: steps) for each of the last `scales` scales.

        Default: fewer evaluations as the scales get finer, since each finer scale starts
        from the coarser result and costs more (docs/defaults.md): 120 at 64 px falling as
        side^-0.7 (74 at 128), at least 20; RMSprop takes half as many again from 256 px on
        (68, 42, 26 at 256, 512, 1024 px), L-BFGS not (45, 28, 20). The official code's
        RMSprop takes 200 steps at every scale, about four times the time."""
        if self.evaluations is None:
            sides = scale_sides(self.size)[-scales:]
            return [self._default_budget(side) for side in sides]
        if isinstance(self.evaluations, (int, np.integer)):
            return [self.evaluations] * scales
        budgets = list(self.evaluations)
        if len(budgets) != scales:
            raise ValueError(f"{len(budgets)} evaluation budget{'s' if len(budgets) != 1 else ''} "
                             f"given for {scales} scale{'s' if scales != 1 else ''}")
        return budgets

    def _default_budget(self, side: int) -> int:
        more = 1.5 if self.optimizer == "rmsprop" and side >= FINE_SIDE else 1.0
        return max(20, round(120 * more * (64 / side) ** 0.7))


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


def _check_weight(weight: Any) -> None:
    if weight is not None and not (_is_number(weight) and np.isfinite(weight) and weight > 0):
        raise ValueError(f"content weight must be a positive number, got {weight}")


def _check_number(name: str, value: Any, zero: bool) -> None:
    """None, or a finite number > 0 (>= 0 with ``zero``); else ValueError naming it."""
    if value is None:
        return
    if not (_is_number(value) and np.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} number, "
                         f"got {value}")


def _check_style_weights(weights: Any) -> None:
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)) \
            or len(weights) == 0:
        raise ValueError(f"style weights must be a list of positive numbers, got {weights!r}")
    for w in weights:
        if not (_is_number(w) and np.isfinite(w) and w > 0):
            raise ValueError(f"style weights must be positive numbers, got {w}")
