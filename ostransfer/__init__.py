"""ostransfer: STROTSS style transfer without a deep-learning framework.

``Options``, ``Progress``, ``Stylizer``, ``stylize`` and ``batch`` are loaded on first use (NumPy and
ONNX Runtime take a second), so that the command line starts, and handles Ctrl-C, at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .run.batch_api import batch
    from .run.options import Options
    from .run.stylizer import Progress, Stylizer, stylize

__all__ = ["Options", "Progress", "Stylizer", "__version__", "batch", "stylize"]


def __getattr__(name: str) -> Any:
    if name == "batch":
        from .run.batch_api import batch

        return batch
    if name == "Options":
        from .run.options import Options

        return Options
    if name in ("Progress", "Stylizer", "stylize"):
        from .run import stylizer

        return getattr(stylizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
