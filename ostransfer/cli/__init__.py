"""The ``ostransfer`` command line. ``main`` is the console script; ``app`` (the typer app,
in ``commands``) is loaded on first use, so that importing this package is instant.

``main`` handles Ctrl-C from its first instruction: while the command line's modules load
(typer, NumPy, ONNX Runtime: a second or more) a Ctrl-C prints one line and exits with code
130, nothing having been written; after that the commands handle it (see ``common``).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .commands import app

__all__ = ["app", "main"]
INTERRUPTED = b"error: interrupted; nothing was written\n"


def main() -> None:
    """The console script (``ostransfer``, ``python -m ostransfer``)."""
    watching = _exit_on_ctrl_c()
    from .commands import app  # the heavy imports

    if watching:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(app())


def _exit_on_ctrl_c() -> bool:
    """Make SIGINT print one line and exit 130 (unless it is ignored, or this is not the main
    thread); whether it did."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    try:
        signal.signal(signal.SIGINT, _interrupted)
    except ValueError:  # not the main thread
        return False
    return True


def _interrupted(signum: int, frame: Any) -> None:
    """Nothing has been written yet: one line, exit code 130, no traceback."""
    os.write(2, INTERRUPTED)
    os._exit(130)


def __getattr__(name: str) -> Any:
    if name == "app":
        from .commands import app

        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
