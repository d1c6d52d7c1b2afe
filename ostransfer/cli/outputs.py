"""Where results go: output paths checked before any work, saving with a rescue, the names of
partial results, checkpoint folders that must not be clobbered."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..imaging.io import SAVE_FORMATS, SaveError, format_supported, save
from ..run import checkpoint as ckpt
from .common import UsageError


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
