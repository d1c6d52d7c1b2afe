"""What every command shares: one-line errors and exit codes, signals, option parsing.

Exit codes: 0 done; 2 unusable input or options (one line, nothing written, checked before
any work); 130 interrupted (Ctrl-C or SIGTERM: the best image so far is saved next to the
output); 1 the run failed (a non-finite loss, out of memory: the best image so far is saved
likewise) or the result could not be written.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..imaging.io import ImageError
from ..method.optimizer import Stop
from ..nets.provision import ModelError

err = Console(stderr=True)
DEVICE_HELP = "auto: the GPU when onnxruntime-gpu, CuPy and a CUDA device are present"


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` (rich markup) as one error line and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """One plain line on stderr."""
    err.print(message, highlight=False, soft_wrap=True, markup=False)


class _SayHandler(logging.Handler):
    """Log records as plain lines on stderr (in a terminal and in a log file alike)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(self.format(record))


def announce_model_setup() -> None:
    """Every command says when it downloads the weights or exports the model files (first
    use: several seconds), instead of going silent."""
    logger = logging.getLogger("ostransfer.nets.provision")
    if not any(isinstance(h, _SayHandler) for h in logger.handlers):
        logger.addHandler(_SayHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the library's input errors into one line and exit code 2, never a traceback; a
    Ctrl-C outside a run (nothing to save yet) into one line and exit code 130."""
    try:
        yield
    except (UsageError, ImageError, ModelError, ValueError) as exc:
        fail(escape(str(exc)))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", 130)


class StopSignals:
    """While active, SIGINT and SIGTERM ask the run to stop at the next evaluation (``check``
    raises Stop there); a second signal stops it at once (KeyboardInterrupt) unless
    ``shield`` is on (while a result is being written)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.shield = False
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signum
            if not self.shield:
                os.write(2, b"\nstopping after this evaluation (again to stop at once)\n")
        elif not self.shield:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.received is not None:
            raise Stop

    def watching(self, display: Callable) -> Callable:
        """A progress callback: show the progress, then stop if a signal came."""
        def progress(p) -> None:
            display(p)
            self.check()
        return progress


def parse_ints(text: Optional[str], what: str) -> Optional[list[int]]:
    """Comma-separated integers (None stays None); UsageError naming ``what`` otherwise."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be integers separated by commas, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


def parse_budgets(text: Optional[str]) -> int | list[int] | None:
    """--evaluations: one number for every scale, or one per scale."""
    budgets = parse_ints(text, "--evaluations")
    return budgets[0] if budgets and len(budgets) == 1 else budgets


def parse_floats(text: str, what: str) -> list[float]:
    """Comma-separated positive numbers; UsageError naming ``what`` otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise UsageError(f"{what} must be positive numbers, got {bad[0]}")
    return values


def check_number(value: float, what: str, minimum: float = 0.0) -> None:
    if not (math.isfinite(value) and value >= minimum):
        raise UsageError(f"{what} must be a number of at least {minimum:g}, got {value}")
