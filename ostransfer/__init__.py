"""ostransfer: STROTSS style transfer without a deep-learning framework."""

from .api import Options, Progress, Stylizer, stylize

__all__ = ["Options", "Progress", "Stylizer", "stylize"]
__version__ = "0.1.0"
