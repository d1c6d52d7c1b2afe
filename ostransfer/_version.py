"""The package version (read by the build backend and recorded in checkpoints and reports)."""

__version__ = "0.2.0"
