"""The ``ostransfer`` command line (typer): one app per command group, joined here.

``transfer`` (stylize, demo), ``sweep``, ``batch``, ``models`` (fetch-model) and ``research``
(compare, score, evaluate, bench) parse options and display; the run layer does the work.
Exit codes are in ``common``. The console script enters through ``ostransfer.cli.main``, which loads this.
"""

from __future__ import annotations

import typer

from . import batch, models, research, sweep, transfer
from .common import announce_model_setup

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Style transfer by relaxed optimal transport and self-similarity (STROTSS).")
for group in (transfer.app, sweep.app, batch.app, models.app, research.app):
    app.add_typer(group)


@app.callback()
def _setup() -> None:
    announce_model_setup()
