"""The ``sweep`` command: one result per content weight, side by side and labelled (like the
paper's figure); a stopped sweep keeps the finished results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape

from ..arrays import resolve_device
from ..imaging.grid import labelled_row
from ..imaging.io import load_pil
from ..run.options import Options
from ..run.plan import preflight
from ..run.stylizer import Interrupted, Stylizer, Unfinished
from .common import (DEVICE_HELP, StopSignals, clear_errors, err, fail,
                     parse_budgets, parse_floats, say)
from .outputs import check_output, output_path, save_kept, save_result, start_output, tagged
from .progress import ProgressDisplay

app = typer.Typer()

SWEEP_WEIGHTS = {"paper": "1024,4096,16384", "strotss": "0.5,2,8"}


@app.command(no_args_is_help=True)
def sweep(
    content: Path = typer.Argument(..., metavar="CONTENT", show_default=False),
    style: Path = typer.Argument(..., metavar="STYLE", show_default=False),
    output: str = typer.Option(..., "-o", "--output", metavar="PATH", show_default=False,
                               help="grid image"),
    weights: Optional[str] = typer.Option(
        None, help="content weights, comma-separated (default: paper "
                   f"{SWEEP_WEIGHTS['paper']}, strotss {SWEEP_WEIGHTS['strotss']})"),
    size: int = typer.Option(256, help="long side of each result, px"),
    preset: str = typer.Option(Options.preset),
    seed: int = typer.Option(0),
    evaluations: Optional[str] = typer.Option(None, help="evaluations per scale"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
) -> None:
    """Render one result per content weight side by side, labelled (like the paper's figure)."""
    with clear_errors():
        out = output_path(output)
        check_output(out, [content, style], overwrite)
        values = parse_floats(weights or SWEEP_WEIGHTS.get(preset, "1"), "--weights")
        budgets = parse_budgets(evaluations)
        content_img, style_img = load_pil(content), load_pil(style)
        runs = [Options(size=size, preset=preset, content_weight=weight, seed=seed,
                        evaluations=budgets).validated() for weight in values]
        device = resolve_device(device)
        plan = preflight(content_img.size, style_img.size, runs[0], device,
                         (str(content), str(style)))
        start_output(out)
        stylizer = Stylizer(device=device)
        with StopSignals() as signals:
            results = _sweep_runs(stylizer, signals, content_img, style_img, runs, plan, out,
                                  quiet)
            signals.shield = True
            written, problem = save_result(
                labelled_row(results, [f"a = {w:g}" for w in values]), out, overwrite)
        if problem is not None:
            fail(escape(problem + (f"; the grid was saved to {written} instead" if written
                                    else "; the grid could not be saved")), 1)
        if not quiet:
            say(f"saved {out}")


def _sweep_runs(stylizer: Stylizer, signals: StopSignals, content, style, runs: list[Options],
                plan, out: Path, quiet: bool) -> list[np.ndarray]:
    """One result per option set; a stopped sweep keeps the finished results in a grid."""
    results: list[np.ndarray] = []
    try:
        for options in runs:
            display = ProgressDisplay(plan, err, enabled=not quiet)
            with display.bar:
                results.append(stylizer.run(content, style, options, signals.watching(display)))
    except Unfinished as stop:
        signals.shield = True
        kept = None
        if results:
            labels = [f"a = {o.weight:g}" for o in runs[:len(results)]]
            kept, _ = save_kept(labelled_row(results, labels), tagged(
                out, "interrupted" if isinstance(stop, Interrupted) else "failed"))
        where = ("no result was finished" if not results
                 else "the grid of the finished results could not be saved" if kept is None
                 else f"the finished result is in {kept}" if len(results) == 1
                 else f"the {len(results)} finished results are in {kept}")
        if isinstance(stop, Interrupted):
            say(f"interrupted: {where}")
            raise typer.Exit(130) from None
        fail(escape(f"{stop}; {where}"), 1)
    return results
