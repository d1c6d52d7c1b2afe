"""A run made ready before any work: its inputs loaded and checked, its scales planned, its
checkpoint opened (``prepare``). The API and the command line both start runs this way."""

from __future__ import annotations


import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from PIL import Image

from ..arrays import resolve_device
from ..imaging.guides import GuideError, Guides
from ..imaging.io import ImageLike, load_pil
from . import checkpoint as ckpt
from .options import InputError, Options
from .plan import Scale, fit_to_memory, preflight


@dataclass(frozen=True)
class Names:
    """How messages name a run's inputs: the API names what they are, the command line its
    files and options."""

    images: Sequence[str] = ("content image", "style image")  # the content, then each style
    guides: tuple[str, str] = ("content guide", "style guide")  # in shape errors
    guide_options: tuple[str, str] = ("a content guide", "a style guide")  # "X needs Y too"
    pairing: str = ""  # prefix of a guide-pairing error (the CLI names both files)


@dataclass
class Job:
    """A run ready to start: ``plan`` has its scales; ``resume`` is the checkpointed state to
    continue from (None: from the start); ``checkpoint`` writes the run's state."""

    content: Image.Image
    styles: list[Image.Image]
    options: Options
    plan: list[Scale]
    guides: Guides | None = None
    checkpoint: ckpt.Checkpointer | None = None
    resume: ckpt.RunState | None = None
    names: Names = field(default_factory=Names)

    @property
    def finished(self) -> bool:
        """The checkpoint to resume from holds the finished run: nothing is left to compute."""
        return self.resume is not None and self.resume.complete


def style_list(style: Any) -> list:
    """One style image or a list/tuple of them -> a list (an array is one image)."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise InputError("no style image given")
    return styles


def load_guides(content_guide: ImageLike | None, style_guide: ImageLike | None,
                opts: Options | None = None, names: Names = Names()) -> Guides | None:
    """Both guides (paths, PIL images or arrays) paired -> Guides; neither -> None.
    InputError if only one is given, ImageError if one is unreadable, GuideError if their
    colours do not pair up."""
    if content_guide is None and style_guide is None:
        return None
    if content_guide is None or style_guide is None:
        given, missing = names.guide_options if style_guide is None else names.guide_options[::-1]
        raise InputError(f"{given} needs {missing} too (a guide for each image)")
    images = load_pil(content_guide), load_pil(style_guide)
    size = opts.size if opts is not None else Options.size
    try:
        return Guides(*images, max_side=max(1024, size))
    except GuideError as exc:
        raise GuideError(f"{names.pairing}{exc}") from None


def guide_images(guides: Guides | None) -> tuple[Image.Image, Image.Image] | None:
    """The two guide images a checkpoint identity records (None without guides)."""
    return None if guides is None else (guides.content_image, guides.style_image)


def prepare(content: ImageLike, style: ImageLike | Sequence[ImageLike], options: Options, *,
            device: str = "cpu", content_guide: ImageLike | None = None,
            style_guide: ImageLike | None = None, checkpoint: str | os.PathLike | None = None,
            resume: str | os.PathLike | None = None, every: float = 180.0,
            warn: Callable[[str], None] | None = None, names: Names = Names(),
            max_memory: int | None = None) -> Job:
    """Load and check everything a run needs, in the order a user meets the problems.

    checkpoint: the folder the run's state is saved in; resume: the folder to continue from
    (usually the same); every: seconds between checkpoints inside a scale; max_memory: bytes
    the run may use (besides the machine's available memory and OSTRANSFER_MAX_MEMORY): when
    whole images do not fit, the job's options read the maps in tiles that do. Raises
    ValueError (InputError, ImageError, GuideError, CheckpointError) with one line; nothing
    is computed before every check has passed."""
    options = options.validated()
    content_img = load_pil(content)
    style_imgs = [load_pil(s) for s in style_list(style)]
    guides = load_guides(content_guide, style_guide, options, names)
    if guides is not None and len(style_imgs) == 1:
        guides.check_shapes(content_img.size, style_imgs[0].size, names.guides)
    device = resolve_device(device)
    regions = 1 if guides is None else len(guides) + 1
    if resume is not None and options.tile is None:  # resume with the tiles it was begun with
        options = replace(options, tile=ckpt.saved_tile(resume))
    options = fit_to_memory(content_img.size, [s.size for s in style_imgs], options, device,
                            regions, max_memory)
    plan = preflight(content_img.size, [s.size for s in style_imgs], options, device,
                     names.images, guides=guides, max_memory=max_memory)
    if not (math.isfinite(every) and every >= 0):
        raise InputError(f"the checkpoint interval must be at least 0 s, got {every}")
    job = Job(content_img, style_imgs, options, plan, guides, names=names)
    if checkpoint is None and resume is None:
        return job
    identity = ckpt.identity(content_img, style_imgs, options, guides=guide_images(guides))
    if resume is not None:
        job.resume = ckpt.load(resume, identity)
        if job.resume.scales != len(plan):
            raise ckpt.CheckpointError(f"{resume}: the checkpoint has {job.resume.scales} "
                                       f"scale{'s' if job.resume.scales != 1 else ''}, this "
                                       f"run {len(plan)}")
    job.checkpoint = ckpt.Checkpointer(checkpoint if checkpoint is not None else resume,
                                       identity, every=every, warn=warn)
    return job
