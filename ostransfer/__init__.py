"""ostransfer: STROTSS style transfer without a deep-learning framework."""

from ._version import __version__
from .run.options import Options
from .run.stylizer import Progress, Stylizer, stylize

__all__ = ["Options", "Progress", "Stylizer", "__version__", "stylize"]
