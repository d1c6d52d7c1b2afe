"""Where results go: output paths checked before any work, saving that never replaces a file
without --overwrite (not even one that appeared during the run) and keeps the result under
a rescue name when it cannot go where it was asked, checkpoint folders that must not be
clobbered."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np

from ..files import (
    fit_name,
    folder_of,
    name_bytes,
    name_limit,
    partial_path,
    remove_stale_partials,
)
from ..imaging.io import SAVE_FORMATS, SaveError, format_supported, save
from ..run import checkpoint as ckpt
from ..run.recipe import RECIPE_KEY, recipe_text, sidecar_path, write_sidecar
from .common import UsageError

Saved = tuple[Path | None, str | None]  # (where the image went or None, the problem or None)


def output_path(text: str) -> Path:
    """The -o argument as typed -> a Path; a name that ends in a slash (or ``.``) names a
    folder, so it is refused (pathlib would drop the slash and write a file there)."""
    if not text:
        raise UsageError("-o: the output name is empty")
    if text.endswith(("/", os.sep)):
        raise UsageError(f"{text}: ends in a slash, which names a folder; give an image file "
                         f"name (e.g. {text}out.png)")
    if os.path.basename(text) in (".", ".."):
        raise UsageError(f"{text}: names a folder; give an image file name")
    return Path(text)


def check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output we could not or should not write, before any work is done."""
    _check_format(out)
    folder = folder_of(out)
    limit = name_limit(folder)
    if name_bytes(out.name) > limit:
        raise UsageError(f"{out}: the file name is {name_bytes(out.name)} bytes long; this file "
                         f"system takes at most {limit}")
    try:
        _check_place(out, inputs, overwrite)
    except OSError as exc:  # a path too long, a loop of links: what stat() says
        raise UsageError(f"{out}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise UsageError(f"{out}: folder {folder} does not exist")
    if not _can_write(out):
        raise UsageError(f"{out}: folder {folder} is not writable")


def start_output(out: Path) -> None:
    """Once every check has passed: remove the partial files of ``out`` that a killed run
    left (a SIGKILL or a power cut while it saved)."""
    remove_stale_partials(out)


def _check_format(out: Path) -> None:
    suffix = out.suffix.lower()
    if not suffix:
        raise UsageError(f"{out}: no file extension; use one of {', '.join(SAVE_FORMATS)}")
    if suffix not in SAVE_FORMATS:
        raise UsageError(f"{out}: unknown output extension {out.suffix!r} (use one of "
                         f"{', '.join(SAVE_FORMATS)})")
    if not format_supported(SAVE_FORMATS[suffix]):
        raise UsageError(f"{out}: this Pillow cannot write {SAVE_FORMATS[suffix]} files; "
                         f"use .png or .jpg")


def _check_place(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Not a folder, not an input, not there already (a dangling link counts) unless --overwrite."""
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give an image file name")
    for source in inputs:
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise UsageError(f"{out}: the output would overwrite an input image")
    if (out.exists() or out.is_symlink()) and not overwrite:
        what = "exists" if out.exists() else "exists (a symbolic link to nothing)"
        raise UsageError(f"{out}: {what}; pass --overwrite to replace it")


def _can_write(out: Path) -> bool:
    """Whether the save's partial file can be made next to ``out`` (the real name: its
    length and the folder's permissions; os.access says yes to root on a read-only mount)."""
    if not os.access(folder_of(out), os.W_OK | os.X_OK):
        return False
    probe = partial_path(out)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


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
    if resuming or overwrite or not ckpt.exists(folder):
        return
    try:
        _, state = ckpt.read(folder)
    except ckpt.UnreadableCheckpoint as exc:
        raise UsageError(f"{option} {folder}: holds a checkpoint that cannot be resumed (it is "
                         f"{exc.reason}); pass --overwrite to start over there") from None
    if not state.complete:
        raise UsageError(f"{option} {folder}: holds an unfinished run ({state.describe()}); "
                         f"continue it with --resume {folder}, or pass --overwrite to start over")


def tagged(out: Path, tag: str) -> Path:
    """``<stem>.<tag><ext>`` next to out (the stem shortened if the name would be too long)."""
    return out.with_name(fit_name(out.stem, f".{tag}{out.suffix}", name_limit(folder_of(out))))


def default_checkpoint(out: Path) -> Path:
    """The folder a run that names none checkpoints in: ``<stem>.checkpoint`` next to out."""
    return out.with_name(fit_name(out.stem, ".checkpoint", name_limit(folder_of(out))))


def numbered(path: Path) -> Iterator[Path]:
    """path, then ``<stem>-2<ext>``, ``<stem>-3<ext>``, ... (each fitted to the name limit)."""
    yield path
    limit = name_limit(folder_of(path))
    for number in count(2):
        yield path.with_name(fit_name(path.stem, f"-{number}{path.suffix}", limit))


def save_result(image: np.ndarray, out: Path, overwrite: bool,
                recipe: dict | None = None) -> Saved:
    """Save the result at ``out``: replacing what is there only with ``overwrite``; a file
    that appeared there during the run is kept and the result goes to ``<stem>.new<ext>``;
    a failed save (a full disk) goes to the temporary folder instead. ``recipe``: carried by
    the result (``run.recipe``: a PNG text chunk, else a sidecar file)."""
    text = None if recipe is None else {RECIPE_KEY: recipe_text(recipe)}
    try:
        written, problem = save(image, out, replace=overwrite, text=text), None
    except FileExistsError:
        problem = f"{out}: appeared during the run and was not replaced (no --overwrite)"
        written = _rescue(image, out, tagged(out, "new"), text)
    except SaveError as exc:
        written, problem = _rescue(image, out, None, text), str(exc)
    if written is not None and recipe is not None:
        try:
            write_sidecar(written, recipe)
        except OSError as exc:
            problem = problem or (f"{sidecar_path(written)}: the recipe could not be written "
                                  f"({exc.strerror or exc})")
    return written, problem


def save_kept(image: np.ndarray, path: Path) -> Saved:
    """Save a side result (the best image of a stopped run) at ``path`` or, if that is
    taken, the first free numbered name: it never replaces a file."""
    try:
        return _save_unused(image, path), None
    except SaveError as exc:
        return _rescue(image, path, None), str(exc)


def _save_unused(image: np.ndarray, path: Path, text: dict[str, str] | None = None) -> Path:
    """Save at the first name of ``numbered(path)`` that nothing holds, without a race."""
    for candidate, _ in zip(numbered(path), range(10_000)):
        try:
            return save(image, candidate, replace=False, text=text)
        except FileExistsError:
            continue
    raise SaveError(f"{path}: no free name left")


def _rescue(image: np.ndarray, path: Path, near: Path | None,
            text: dict[str, str] | None = None) -> Path | None:
    """Where the image could go instead: ``near`` (numbered), else the temporary folder."""
    places = [near] if near is not None else []
    temporary = Path(tempfile.gettempdir())
    if temporary.resolve() != folder_of(path).resolve():
        places.append(temporary / fit_name(path.stem, path.suffix, name_limit(temporary)))
    for place in places:
        try:
            return _save_unused(image, place, text)
        except SaveError:
            continue
    return None
