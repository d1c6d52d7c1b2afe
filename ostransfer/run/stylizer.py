"""The Python API: ``stylize(content, style, **options)`` and the reusable ``Stylizer``, which
runs the coarse-to-fine schedule (docs/algorithm.md §5) with checkpoints and clean stops."""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..arrays import resolve_device, to_numpy
from ..imaging.color import preserve_colors
from ..imaging.guides import Guides
from ..imaging.io import ImageLike, resize, to_array, to_pil
from ..method.lbfgs import lbfgs
from ..method.mlbfgs import mlbfgs
from ..method.objective import Objective
from ..method.optimizer import NonFiniteError, Step, Stop
from ..method.products import thread_invariant
from ..method.rmsprop import rmsprop
from ..method.schedule import initial_image
from ..nets.engine import VGGFeatures
from ..nets.runtime import usable_cores
from .checkpoint import Checkpointer, CheckpointError, RunState
from .job import Job, prepare, style_list
from .options import Options
from .plan import Scale, check_inputs, keeps_content_maps, parse_memory, plan_scales
from .style_side import palette_start, style_side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Reported after every function evaluation."""

    scale: int  # 0-based
    scales: int
    side: int  # long side of this scale, px
    evaluation: int  # within the scale, 1-based
    budget: int  # evaluations of this scale
    loss: float
    terms: dict[str, float]
    elapsed: float  # seconds since the run started


class Unfinished(Exception):
    """A run that ended early. ``image`` is the best image of the scale in progress, (h, w, 3)
    float32 in [0, 1], at that scale's size (the previous scale's result if none was
    evaluated yet), or None; ``side`` is its long side; ``state`` is the last state
    written to the run's checkpoint folder (None without one, or before the first write)."""

    def __init__(self, message: str, image: np.ndarray | None, side: int,
                 state: RunState | None = None):
        super().__init__(message)
        self.image, self.side, self.state = image, side, state


class Interrupted(Unfinished):
    """The run was stopped (Ctrl-C, SIGTERM or a callback raising ``Stop``). With a checkpoint
    folder, the state of the last round boundary is written at the interrupt (it continues
    the run exactly); ``lost`` counts the evaluations done since it, which a resumed run
    does again."""

    def __init__(self, image: np.ndarray | None, side: int, state: RunState | None = None,
                 lost: int = 0):
        super().__init__(f"interrupted at the {side} px scale", image, side, state)
        self.lost = lost


class RunFailed(Unfinished):
    """The run broke off: a non-finite loss or gradient (``term`` names it), or an error
    from the engine or the machine (out of memory). ``__cause__`` is the original error."""

    def __init__(self, message: str, image: np.ndarray | None, side: int,
                 state: RunState | None = None, term: str | None = None):
        super().__init__(message, image, side, state)
        self.term = term


def stream_rng(seed: int, scale: int, stream: int) -> np.random.Generator:
    """The random draws of (seed, scale, stream): stream 0 samples the style at that scale,
    stream r + 1 is round r's sample set. Independent of everything before it, so a run
    continued from a checkpoint draws what the uninterrupted run would have drawn."""
    return np.random.default_rng(np.random.SeedSequence([seed, scale, stream]))


@dataclass
class _Run:
    """What the scales of one run share."""

    content: Image.Image
    styles: list[Image.Image]
    opts: Options
    plan: list[Scale]
    progress: Callable[[Progress], None] | None
    checkpoint: Checkpointer | None
    started: float  # time.perf_counter() at the start

    def saved(self) -> RunState | None:
        return self.checkpoint.saved if self.checkpoint is not None else None


class _ScaleProgress:
    """One scale in progress: reports every evaluation, keeps the best image (what a run
    that stops early hands back) and writes round checkpoints when they are due."""

    def __init__(self, run: _Run, position: int, previous: np.ndarray | None,
                 start: np.ndarray | None):
        self.run, self.position, self.previous = run, position, previous
        self.scale = run.plan[position]
        self.best_loss, self.best = math.inf, start
        self.resumed_at = 0  # the evaluations of a state this scale continues from
        self.evaluations = 0  # done in this scale, counted from its start
        self.boundary: RunState | None = None  # the last round boundary's state

    def report(self, step: Step) -> None:
        self.evaluations = step.evaluation
        if step.loss < self.best_loss:
            self.best_loss, self.best = step.loss, step.image
        if self.run.progress:
            self.run.progress(Progress(self.position, len(self.run.plan), self.scale.side,
                                       step.evaluation, step.budget, step.loss, step.terms,
                                       time.perf_counter() - self.run.started))

    def round_done(self, rounds: int, count: int, opt_state: dict) -> None:
        """At a round boundary: keep its state (the optimisers do not change the arrays they
        hand over), and write it when a checkpoint is due."""
        checkpoint = self.run.checkpoint
        if checkpoint is None:
            return
        self.boundary = RunState(self.position, rounds, count, self.previous, opt_state,
                                 len(self.run.plan))
        if checkpoint.due():
            checkpoint.save(self.boundary)

    def _save_at_interrupt(self) -> int:
        """Write the last round boundary's state if the checkpoint does not hold it yet;
        the evaluations of this scale that the checkpoint does not hold."""
        checkpoint, saved = self.run.checkpoint, self.run.saved()
        if checkpoint is None:
            return 0
        if self.boundary is not None and saved is not self.boundary:
            checkpoint.save(self.boundary)
            saved = self.run.saved()
        held = saved.evaluations if saved is not None and saved.scale == self.position \
            else self.resumed_at
        return max(0, self.evaluations - held)

    def unfinished(self, exc: BaseException) -> Unfinished:
        """The exception a run raises when ``exc`` stopped this scale."""
        side = self.scale.side if self.best is None else int(max(self.best.shape[:2]))
        saved, where = self.run.saved(), f"at the {self.scale.side} px scale"
        if isinstance(exc, (KeyboardInterrupt, Stop)):
            lost = self._save_at_interrupt()
            return Interrupted(self.best, side, self.run.saved(), lost)
        if isinstance(exc, NonFiniteError):
            return RunFailed(f"the loss is not finite {where}: {exc}", self.best, side, saved,
                             exc.term)
        if isinstance(exc, MemoryError):
            return RunFailed(f"out of memory {where}", self.best, side, saved)
        text = " ".join(str(exc).split())[:200]
        return RunFailed(f"the run failed {where} ({type(exc).__name__}: {text})", self.best,
                         side, saved)


class Stylizer:
    """Loads the VGG16 sessions once; ``stylize`` may be called many times.

    device: "auto" (the GPU when onnxruntime-gpu, CuPy and a CUDA device are present),
    "cpu" or "cuda"."""

    def __init__(self, device: str = "auto", threads: int | None = None):
        self.device = resolve_device(device)
        self.threads = threads or usable_cores()
        self.engine = VGGFeatures(device=self.device, threads=self.threads)
        log.info("ostransfer running on %s", self.device)

    def stylize(self, content: ImageLike, style: ImageLike | Sequence[ImageLike], *,
                content_guide: ImageLike | None = None, style_guide: ImageLike | None = None,
                progress: Callable[[Progress], None] | None = None,
                checkpoint: str | os.PathLike | None = None, resume: bool = False,
                max_memory: int | str | None = None, **options: Any) -> Image.Image:
        """Stylise `content` with `style` (paths, PIL images or (H, W, 3) arrays) -> PIL image.

        style: one image, or a list of them (mixed in proportion to ``style_weights``).
        content_guide, style_guide: colour-coded region guides (both or neither; one style
        image): each colour found in both pairs a content region with a style region.
        checkpoint: a folder to save the run's state in (after each scale and every few
        minutes); with resume=True the run continues from the state saved there (which
        must come from the same inputs and options). max_memory: bytes (or "8G") the run may
        use; images that do not fit whole are read in tiles that fit. Raises ValueError on
        unusable inputs or options (before any work), Interrupted or RunFailed (holding the
        best image)."""
        if resume and checkpoint is None:
            raise ValueError("resume=True needs the checkpoint folder")
        job = prepare(content, style, Options(**options), device=self.device,
                      content_guide=content_guide, style_guide=style_guide,
                      checkpoint=checkpoint, resume=checkpoint if resume else None,
                      max_memory=parse_memory(max_memory, "max_memory=")
                      if isinstance(max_memory, str) else max_memory)
        return to_pil(self.run_job(job, progress))

    def run_job(self, job: Job, progress: Callable[[Progress], None] | None = None) -> np.ndarray:
        """Run a prepared job; returns (H, W, 3) float32 in [0, 1] (see ``run``)."""
        return self.run(job.content, job.styles, job.options, progress, guides=job.guides,
                        checkpoint=job.checkpoint, resume=job.resume)

    def run(self, content: Image.Image, style: Image.Image | Sequence[Image.Image],
            opts: Options, progress: Callable[[Progress], None] | None = None, *,
            guides: Guides | None = None, checkpoint: Checkpointer | None = None,
            resume: RunState | None = None) -> np.ndarray:
        """The coarse-to-fine optimisation; returns (H, W, 3) float32 in [0, 1].

        style: one PIL image or a list; guides: region guides (``job.load_guides``), or None.
        checkpoint: saves the state after each scale and (when due) at round boundaries;
        resume: a state to continue from. Raises Interrupted on KeyboardInterrupt or Stop,
        RunFailed on any other error during the optimisation, both holding the best image."""
        opts = opts.validated()
        styles = style_list(style)
        check_inputs(content.size, [s.size for s in styles], opts, guides)
        plan = plan_scales(content.size, [s.size for s in styles], opts)
        state = resume or RunState(scales=len(plan))
        if state.scales != len(plan) or not 0 <= state.scale <= len(plan):
            raise CheckpointError(f"the checkpoint has {_count(state.scales, 'scale')}, this "
                                  f"run {len(plan)}")
        if state.complete or state.scale == len(plan):
            if state.result is None:
                raise CheckpointError("the checkpoint is marked finished but holds no image")
            return np.asarray(state.result, dtype=np.float32)
        run = _Run(content, styles, opts, plan, progress, checkpoint, time.perf_counter())
        with thread_invariant(self.threads):  # the same bytes on any number of threads
            return self._scales(run, state, guides, checkpoint)

    def _scales(self, run: _Run, state: RunState, guides: Guides | None,
                checkpoint: Checkpointer | None) -> np.ndarray:
        """``run``'s scales from ``state`` on; the last one's result."""
        plan, result = run.plan, state.result
        for position in range(state.scale, len(plan)):
            continued = state if position == state.scale and state.optimizer else None
            result = self._scale(run, position, result, continued, guides)
            if checkpoint is not None:
                try:
                    checkpoint.save(RunState(position + 1, 0, 0, result, {}, len(plan),
                                             complete=position == len(plan) - 1))
                except KeyboardInterrupt:
                    raise Interrupted(result, plan[position].side, run.saved()) from None
        return result

    def _scale(self, run: _Run, position: int, previous: np.ndarray | None,
               continued: RunState | None, guides: Guides | None) -> np.ndarray:
        """Optimise one scale from the previous scale's result (or from ``continued``, a
        state saved inside this scale); the Unfinished exceptions wrap whatever stops it."""
        opts, scale = run.opts, run.plan[position]
        last = position == len(run.plan) - 1
        saved = None if continued is None else continued.optimizer
        image = None if saved is None else np.asarray(saved.get("x", saved.get("image")),
                                                      dtype=np.float32)
        tracker = _ScaleProgress(run, position, previous, image if saved is not None else previous)
        try:
            content = to_array(resize(run.content, scale.content_size))
            styles = [to_array(resize(s, size)) for s, size in zip(run.styles, scale.style_sizes)]
            target, style_mean = style_side(
                self.engine, content, styles, opts.style_fractions(len(styles)), opts.preset,
                opts.style_samples, stream_rng(opts.seed, scale.index, 0), guides,
                scale.style_sizes[0], tile=opts.tile)
            objective = Objective(self.engine, content, target, opts.preset, scale.weight,
                                  opts.samples, opts.palette_weight,
                                  keep_content_maps=keeps_content_maps(scale.content_size),
                                  tile=opts.tile, color_weight=opts.color)
            first_round, done = (0, 0) if continued is None else (continued.rounds,
                                                                  continued.evaluations)
            tracker.resumed_at = tracker.evaluations = done
            if image is None:
                recoloured = palette_start(
                    content, styles, opts.style_fractions(len(styles)), guides,
                    scale.style_sizes[0]) if opts.init == "palette" and previous is None else None
                image = initial_image(content, style_mean, previous, last, opts.init, recoloured,
                                      opts.final_detail)
            log.debug("scale %d/%d: %d px, content weight %g, %d evaluations%s",
                      position + 1, len(run.plan), scale.side, scale.weight, scale.budget,
                      f" (continuing after {done})" if done else "")
            rounds = functools.partial(_round_stream, opts.seed, scale.index)
            common = dict(first_round=first_round, done=done, on_round=tracker.round_done)
            if opts.optimizer == "mlbfgs":
                result = mlbfgs(objective, image, scale.budget, opts.per_round, rounds,
                                tracker.report, levels=opts.pyramid_levels or 5, state=saved,
                                **common)
            elif opts.optimizer == "lbfgs":
                result = lbfgs(objective, image, scale.budget, opts.per_round, rounds,
                               tracker.report, levels=opts.pyramid_levels, **common)
            else:
                result = rmsprop(objective, image, scale.budget, rounds,
                                 lr=opts.step_size(last), levels=opts.pyramid_levels or 1,
                                 callback=tracker.report,
                                 per_round=opts.per_round, state=saved, **common)
            result = to_numpy(result)
            del objective
            if last and opts.color_method is not None:
                result = preserve_colors(result, content, opts.color_method)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - keep the best image
            raise tracker.unfinished(exc) from (None if isinstance(exc, (KeyboardInterrupt, Stop))
                                                else exc)
        return result


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _round_stream(seed: int, scale: int, round_index: int) -> np.random.Generator:
    """Round r's sample-set generator: stream r + 1 of the scale (see ``stream_rng``)."""
    return stream_rng(seed, scale, round_index + 1)


@functools.lru_cache(maxsize=2)
def _default_stylizer(device: str) -> Stylizer:
    return Stylizer(device=device)


def stylize(content: ImageLike, style: ImageLike | Sequence[ImageLike], *,
            device: str = "auto", content_guide: ImageLike | None = None,
            style_guide: ImageLike | None = None,
            progress: Callable[[Progress], None] | None = None, **options: Any) -> Image.Image:
    """Stylise once (the model stays loaded for later calls in the same process).

    style: one image or a list of them; content_guide and style_guide: region guides.
    Options: size, preset ("paper" | "strotss"), content_weight, palette_weight,
    color_weight, optimizer ("rmsprop" | "lbfgs" | "mlbfgs"), evaluations (per scale),
    learning_rate, per_round, pyramid_levels, samples, style_samples, init ("palette" |
    "style" | "content"), final_detail, seed, style_weights (one per style image), preserve_color (True,
    "luminance" or "statistics"), tile. Returns a PIL RGB image."""
    return _default_stylizer(resolve_device(device)).stylize(
        content, style, content_guide=content_guide, style_guide=style_guide,
        progress=progress, **options)
