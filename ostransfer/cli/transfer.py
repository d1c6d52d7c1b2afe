"""The style-transfer commands: ``stylize`` and ``demo``. They parse options, check
where the result goes, show progress and save; the run layer loads, checks and plans."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import typer
from rich.markup import escape

from ..arrays import resolve_device
from ..files import sample_image
from ..imaging.color import DEFAULT_METHOD as DEFAULT_COLOR_METHOD, METHODS as COLOR_METHODS
from ..presets import DEFAULT_COLOR_WEIGHT, DEFAULT_CONTENT_WEIGHT, thorough_options
from ..run import checkpoint as ckpt
from ..run.job import Job, Names, prepare
from ..run.options import DEFAULT_LEARNING_RATE, Options
from ..run.plan import parse_memory
from ..run.recipe import make_recipe, read_recipe, recipe_inputs, recipe_options
from ..run.stylizer import Interrupted, Stylizer, Unfinished
from .common import (DEVICE_HELP, StopSignals, UsageError, check_number, clear_errors, err, fail,
                     parse_budgets, parse_floats, say)
from .outputs import (check_checkpoint_folder, check_output, default_checkpoint, output_path,
                      save_kept, save_result, start_output, tagged)
from .progress import ProgressDisplay

app = typer.Typer()

OUTPUT, STYLE, OPTIMISER, GUIDES, ROBUST = ("Output", "Style and content", "Optimiser",
                                            "Guides and colour", "Robustness")
# Runs with a longer side than this save their state by default (in ``default_checkpoint``,
# removed when the result is saved): minutes of work and more (2048 px: about 10 on two cores).
AUTO_CHECKPOINT_SIDE = 1024


def cli_names(content: Path, styles: Sequence[Path], content_guide: Path | None,
              style_guide: Path | None) -> Names:
    """Messages name the files and the options they came from."""
    return Names(images=[str(content), *map(str, styles)],
                 guides=(f"--content-guide {content_guide}", f"--style-guide {style_guide}"),
                 guide_options=("--content-guide", "--style-guide"),
                 pairing=f"{content_guide} and {style_guide}: ")


def prepare_job(device: str, content: Path, styles: list[Path], options: Options, *,
                checkpoint: Path | None = None, resume: Path | None = None,
                every_minutes: float = 3.0, overwrite: bool = False,
                content_guide: Path | None = None, style_guide: Path | None = None,
                max_memory: int | None = None, auto: bool = False) -> Job:
    """Every check of a stylize run, in the order a user meets the problems. ``auto``: the
    checkpoint folder is the default one, not named by the user (resumed when it holds
    this run)."""
    check_number(every_minutes, "--checkpoint-every")
    folder = checkpoint or resume
    if folder is not None:
        option = "checkpoint folder" if auto else "--checkpoint" if checkpoint else "--resume"
        check_checkpoint_folder(folder, option, overwrite,
                                resuming=resume is not None and folder == resume)
    try:
        return prepare(content, styles, options, device=device, content_guide=content_guide,
                       style_guide=style_guide, checkpoint=folder, resume=resume,
                       every=every_minutes * 60.0, warn=lambda text: say(f"warning: {text}"),
                       names=cli_names(content, styles, content_guide, style_guide),
                       max_memory=max_memory)
    except ckpt.UnreadableCheckpoint as exc:
        start_over = "pass --overwrite to start over there" if auto else \
            f"to start over, use --checkpoint {folder} --overwrite instead of --resume"
        raise UsageError(f"{exc}; {start_over}") from None
    except ckpt.OtherRun as exc:
        if not auto:
            raise
        raise UsageError(f"{folder}: holds the checkpoint of another run, made with "
                         f"{'; '.join(exc.differences)}; pass --overwrite to start over there, "
                         f"or --no-checkpoint") from None


def run_job(device: str, job: Job, out: Path, quiet: bool, resume_folder: Path | None,
            overwrite: bool = False, recipe: dict | None = None, auto: bool = False) -> None:
    """Run a prepared job and save its result (replacing a file only with ``overwrite``),
    carrying ``recipe``; see the exit codes in ``common``. ``auto``: the checkpoint folder
    is the default one, removed once the result is saved."""
    start_output(out)
    folder = job.checkpoint.folder if job.checkpoint is not None else None
    if auto and job.resume is not None and not quiet:
        say(f"continuing the run saved in {folder}")
    stylizer = None if job.finished else Stylizer(device=device)  # a Ctrl-C here: nothing to keep
    with StopSignals() as signals:
        if job.finished:
            result = np.asarray(job.resume.result, dtype=np.float32)
            say(f"the checkpoint in {resume_folder} holds the finished run")
        else:
            display = ProgressDisplay(job.plan, err, enabled=not quiet)
            try:
                with display.bar:
                    result = stylizer.run_job(job, signals.watching(display))
            except Unfinished as stop:
                signals.shield = True
                _report_unfinished(stop, out, folder, auto)
        signals.shield = True
        written, problem = save_result(result, out, overwrite, recipe)
    if problem is not None:
        if written is not None:
            fail(escape(f"{problem}; the result was saved to {written} instead"), 1)
        saved = job.checkpoint.saved if job.checkpoint is not None else None
        finished = job.finished or (saved is not None and saved.complete)
        kept = f"; the finished run is kept in {folder}: rerun with --resume {folder}" \
            if finished else ""
        fail(escape(f"{problem}; the result could not be saved{kept}"), 1)
    if auto and folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    if not quiet:
        say(f"saved {out}")


def _report_unfinished(stop: Unfinished, out: Path, folder: Path | None, auto: bool) -> None:
    """Keep the best image of a stopped run next to the output, say where, and exit."""
    interrupted = isinstance(stop, Interrupted)
    kept = problem = None
    if stop.image is not None:
        tag = "interrupted" if interrupted else "failed"
        kept, problem = save_kept(stop.image, tagged(out, f"{tag}-{stop.side}px"))
    where = (f"the best image so far ({stop.side} px scale) is in {kept}" if kept
             else f"the best image so far could not be saved ({problem})" if problem
             else "no image was saved")
    hint = "" if not (folder and ckpt.exists(folder)) else \
        f"; rerun the same command to continue (its state is in {folder})" if auto else \
        f"; continue with --resume {folder}"
    lost = getattr(stop, "lost", 0)
    if hint and lost:
        hint += (f" (the last {lost} evaluation{'s' if lost != 1 else ''}, since the last round"
                 " boundary, are done again)")
    if interrupted:
        say(f"interrupted: {where}{hint}")
        raise typer.Exit(130) from None
    fail(escape(f"{stop}; {where}{hint}"), 1)


def _color(preserve_color: bool, color_method: Optional[str]) -> bool | str:
    if color_method is not None and color_method not in COLOR_METHODS:
        raise UsageError(f"unknown --color-method {color_method!r}; choose "
                         f"{' or '.join(COLOR_METHODS)}")
    if color_method is not None and not preserve_color:
        raise UsageError("--color-method needs --preserve-color")
    return (color_method or DEFAULT_COLOR_METHOD) if preserve_color else False


def _style_weights(text: Optional[str], styles: int) -> tuple[float, ...] | None:
    if text is None:
        return None
    weights = parse_floats(text, "--style-weight")
    if len(weights) != styles:
        raise UsageError(f"--style-weight has {len(weights)} value"
                         f"{'s' if len(weights) != 1 else ''} for {styles} style "
                         f"image{'s' if styles != 1 else ''}")
    return tuple(weights)


@app.command(no_args_is_help=True)
def stylize(
    content: Optional[Path] = typer.Argument(None, metavar="CONTENT", help="content image",
                                             show_default=False),
    style: Optional[list[Path]] = typer.Argument(
        None, metavar="STYLE", show_default=False,
        help="style image, or several to mix (see --style-weight)"),
    output: str = typer.Option(..., "-o", "--output", metavar="PATH", show_default=False,
                               help="output image (.png, .jpg, ...)", rich_help_panel=OUTPUT),
    size: int = typer.Option(512, help="long side of the output, px", rich_help_panel=OUTPUT),
    overwrite: bool = typer.Option(False, help="replace an existing output file (and an "
                                               "unfinished checkpoint)", rich_help_panel=OUTPUT),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress display",
                               rich_help_panel=OUTPUT),
    content_weight: Optional[float] = typer.Option(
        None, help=f"content weight at the 512 px scale, doubling at each halving of the "
                   f"side, whatever the size (default: paper "
                   f"{DEFAULT_CONTENT_WEIGHT['paper']:g}, strotss "
                   f"{DEFAULT_CONTENT_WEIGHT['strotss']:g}); higher keeps more content",
        rich_help_panel=STYLE),
    preset: str = typer.Option(Options.preset, help="paper (the paper's losses) or strotss (the "
                                                    "official code's)", rich_help_panel=STYLE),
    palette_weight: Optional[float] = typer.Option(
        None, help="weight of the palette (RGB) term (default: the preset's, paper 1/a, "
                   "strotss 1/max(a, 1), a the content weight)", rich_help_panel=STYLE),
    color_weight: Optional[float] = typer.Option(
        None, help=f"weight of the colour term, the mean and covariance of the painting's "
                   f"colours (default: paper {DEFAULT_COLOR_WEIGHT['paper']:g}, strotss "
                   f"{DEFAULT_COLOR_WEIGHT['strotss']:g}; 0: the preset's own formula)",
        rich_help_panel=STYLE),
    style_weight: Optional[str] = typer.Option(
        None, metavar="W1,W2,...", help="with several style images: how much of each, "
                                        "comma-separated (normalised; default equal)",
        rich_help_panel=STYLE),
    samples: int = typer.Option(Options.samples, help="output hypercolumns per sample set (N)",
                                rich_help_panel=STYLE),
    style_samples: int = typer.Option(Options.style_samples, help="style hypercolumns per scale (M)",
                                      rich_help_panel=STYLE),
    init: Optional[str] = typer.Option(
        None, help="the start image: palette (the content in the style's colours; the "
                   "default), style (the style's mean colour + the content's detail) or "
                   "content (the content image)", rich_help_panel=STYLE),
    final_detail: Optional[float] = typer.Option(
        None, metavar="F", help=f"how much of the content's finest detail the last scale "
                                f"starts with (the others get all of it; default "
                                f"{Options.final_detail:g}; 0: the official code's start)",
        rich_help_panel=STYLE),
    seed: int = typer.Option(0, help="random seed (same seed, same output)", rich_help_panel=STYLE),
    optimizer: str = typer.Option(Options.optimizer, help="rmsprop (the official code's), lbfgs "
                                  "(L-BFGS-B) or mlbfgs (multi-batch L-BFGS)",
                                  rich_help_panel=OPTIMISER),
    evaluations: Optional[str] = typer.Option(
        None, help="function evaluations per scale: one number, or one per scale, "
                   "comma-separated", rich_help_panel=OPTIMISER),
    learning_rate: Optional[float] = typer.Option(
        None, help=f"RMSprop's step size (half at the last scale; default "
                   f"{DEFAULT_LEARNING_RATE:g})", rich_help_panel=OPTIMISER),
    per_round: int = typer.Option(Options.per_round, help="L-BFGS-B evaluations (mlbfgs: "
                                  "iterations) per sample set", rich_help_panel=OPTIMISER),
    pyramid_levels: Optional[int] = typer.Option(
        None, help=f"the optimiser works on a Laplacian pyramid of this many levels (0: the "
                   f"pixels; mlbfgs: 0 means 5; default {Options.pyramid_levels})",
        rich_help_panel=OPTIMISER),
    thorough: bool = typer.Option(
        False, "--thorough", help="the reference code's schedule: 200 steps at every scale at "
                                  "its step size, a 6-level pyramid, its start image, content "
                                  "weight and objective (no colour term; about five times the "
                                  "default's time; options given explicitly win)",
        rich_help_panel=OPTIMISER),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=OPTIMISER),
    content_guide: Optional[Path] = typer.Option(
        None, metavar="IMAGE", help="region guide of the content: colour-coded regions, each "
                                    "paired with the region of the same colour in --style-guide",
        rich_help_panel=GUIDES),
    style_guide: Optional[Path] = typer.Option(
        None, metavar="IMAGE", help="region guide of the style image (needs --content-guide)",
        rich_help_panel=GUIDES),
    preserve_color: bool = typer.Option(
        False, "--preserve-color", help="keep the content's colours (the result's luminance "
                                        "with the content's chrominance)", rich_help_panel=GUIDES),
    color_method: Optional[str] = typer.Option(
        None, help=f"with --preserve-color: {DEFAULT_COLOR_METHOD} (the default: the content's "
                   f"chrominance at each pixel) or statistics (the content's colour mean and "
                   f"covariance)", rich_help_panel=GUIDES),
    checkpoint: Optional[Path] = typer.Option(
        None, metavar="DIR", help="save the run's state in DIR after each scale and every few "
                                  "minutes, to continue it with --resume DIR",
        rich_help_panel=ROBUST),
    resume: Optional[Path] = typer.Option(
        None, metavar="DIR", help="continue the interrupted run saved in DIR (same inputs and "
                                  "options; the result is the uninterrupted run's)",
        rich_help_panel=ROBUST),
    no_checkpoint: bool = typer.Option(
        False, "--no-checkpoint", help=f"save no state on the way (by default a run above "
                                       f"{AUTO_CHECKPOINT_SIDE} px saves it in <OUT stem>."
                                       f"checkpoint, continues from it when rerun, and removes "
                                       f"it at the end)", rich_help_panel=ROBUST),
    checkpoint_every: float = typer.Option(3.0, metavar="MINUTES",
                                           help="checkpoint inside a scale this often",
                                           rich_help_panel=ROBUST),
    tile: Optional[int] = typer.Option(
        None, metavar="PX", help="read the VGG16 maps in tiles with cores of PX px (a multiple "
                                 "of 16): less memory, more time (default: whole images, "
                                 "unless they do not fit in memory)", rich_help_panel=ROBUST),
    max_memory: Optional[str] = typer.Option(
        None, metavar="SIZE", help="memory the run may use, e.g. 8G (or OSTRANSFER_MAX_MEMORY); "
                                   "images that do not fit whole are read in tiles that fit",
        rich_help_panel=ROBUST),
    recipe: Optional[Path] = typer.Option(
        None, metavar="RESULT", help="make RESULT again from the recipe it carries: its inputs "
                                     "(checked unchanged) and options, instead of CONTENT, STYLE "
                                     "and the style and optimiser options",
        rich_help_panel=ROBUST),
) -> None:
    """Stylise CONTENT with STYLE (one image, or several mixed) and write the result to OUT.

    The result carries its recipe (a PNG text chunk, else OUT.recipe.json): the version, the
    options, the seed and each input's SHA-256; --recipe OUT remakes it, byte for byte on a
    CPU. Ctrl-C stops at the next evaluation and saves the best image so far as
    OUT.interrupted-<side>px (exit code 130)."""
    with clear_errors():
        if no_checkpoint and (checkpoint or resume):
            raise UsageError("--no-checkpoint contradicts --checkpoint and --resume")
        if recipe is not None:
            if content is not None or style:
                raise UsageError("--recipe takes the inputs from the recipe; give no CONTENT "
                                 "or STYLE with it")
            given = read_recipe(recipe)
            if given is None:
                raise UsageError(f"--recipe {recipe}: carries no ostransfer recipe")
            content, style, guide_pair = recipe_inputs(given, f"--recipe {recipe}")
            content_guide, style_guide = guide_pair or (None, None)
        elif content is None or not style:
            raise UsageError("give CONTENT and STYLE (or --recipe RESULT)")
        guides = [g for g in (content_guide, style_guide) if g is not None]
        out = output_path(output)
        check_output(out, [content, *style, *guides], overwrite)
        options = recipe_options(given) if recipe is not None else Options(
            size=size, preset=preset, palette_weight=palette_weight, optimizer=optimizer,
            per_round=per_round, samples=samples, style_samples=style_samples,
            seed=seed, style_weights=_style_weights(style_weight, len(style)),
            preserve_color=_color(preserve_color, color_method), tile=tile,
            **_schedule(preset, thorough, content_weight=content_weight,
                        evaluations=parse_budgets(evaluations), learning_rate=learning_rate,
                        pyramid_levels=pyramid_levels, init=init,
                        color_weight=color_weight, final_detail=final_detail))
        auto = checkpoint is None and resume is None and not no_checkpoint \
            and options.size > AUTO_CHECKPOINT_SIDE
        if auto:
            checkpoint = default_checkpoint(out)
            resume = checkpoint if ckpt.exists(checkpoint) and not overwrite else None
        device = resolve_device(device)
        job = prepare_job(device, content, list(style), options, checkpoint=checkpoint,
                          resume=resume, every_minutes=checkpoint_every, overwrite=overwrite,
                          content_guide=content_guide, style_guide=style_guide,
                          max_memory=None if max_memory is None
                          else parse_memory(max_memory, "--max-memory "), auto=auto)
        made = make_recipe(content, list(style), job.options,
                           (content_guide, style_guide) if guides else None)
        run_job(device, job, out, quiet, resume, overwrite, made, auto)


def _schedule(preset: str, thorough: bool, **given: Any) -> dict[str, Any]:
    """The schedule options given on the command line (None: not given); with --thorough,
    the reference schedule's values for those not given."""
    chosen = {key: value for key, value in given.items() if value is not None}
    return {**thorough_options(preset), **chosen} if thorough else chosen


@app.command()
def demo(
    output: str = typer.Option("ostransfer-demo.png", "-o", "--output", metavar="PATH",
                               help="output image"),
    size: int = typer.Option(512, help="long side of the output, px"),
    overwrite: bool = typer.Option(False, help="replace an existing output file"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
) -> None:
    """Stylise the shipped sample photo (a cat) with van Gogh's Starry Night."""
    with clear_errors():
        content, style = sample_image("content_chelsea.jpg"), sample_image("style_starry_night.jpg")
        out = output_path(output)
        check_output(out, [content, style], overwrite)
        device = resolve_device(device)
        job = prepare_job(device, content, [style], Options(size=size))
        run_job(device, job, out, quiet, None, overwrite,
                make_recipe(content, [style], job.options))
