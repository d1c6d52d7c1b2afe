"""Checkpoints: the state a run needs to continue after an interrupt, a crash or a reboot.

A checkpoint folder holds one file, ``checkpoint.npz``, replaced atomically (written to a
temporary file in the folder, flushed, renamed), so it is always a whole checkpoint. It
records where the run is (scale, L-BFGS-B round, evaluations done), the arrays needed to
go on (the last finished scale's image; mid-scale, the optimiser's state at a round
boundary) and what made the run: a hash of each input image's pixels (the content, every
style image, the region guides) and the options (style weights and colour preservation
included). A
run's random draws depend only on (seed, scale, round) (see ``stylizer.stream_rng``), so a run
resumed from a round boundary replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .._version import __version__
from ..files import remove_stale_partials, write_atomic
from .recipe import ADDED_OFF, options_dict

log = logging.getLogger(__name__)

FILE = "checkpoint.npz"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or belongs to another run (one line)."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file that cannot be resumed at all: damaged (truncated, corrupt, not
    written by ostransfer) or of another format; ``reason`` says which, briefly."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: the checkpoint cannot be resumed: it is {reason}")
        self.path, self.reason = path, reason


class OtherRun(CheckpointError):
    """A checkpoint made with other inputs or options; ``differences`` names them, e.g.
    ``seed 3 (now 0)``."""

    def __init__(self, folder: str | os.PathLike, differences: list[str]):
        super().__init__(f"{folder}: the checkpoint is of another run, made with "
                         f"{'; '.join(differences)}; rerun with the same inputs and "
                         f"options, or start over without --resume")
        self.differences = differences


@dataclass
class RunState:
    """Where a run stands. ``scale`` is the index (in the run's plan) of the scale to do
    next or in progress; ``rounds`` and ``evaluations`` are what is done of it; ``result``
    is the image of the last finished scale (None before the first); ``optimizer`` is the
    optimiser's state after ``rounds`` rounds (empty at a scale boundary)."""

    scale: int = 0
    rounds: int = 0
    evaluations: int = 0
    result: np.ndarray | None = None
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    scales: int = 0  # how many scales the run has
    complete: bool = False  # every scale is done: ``result`` is the final image

    def describe(self) -> str:
        if self.complete:
            return "finished"
        return (f"scale {self.scale + 1} of {self.scales}, {self.evaluations} evaluation"
                f"{'s' if self.evaluations != 1 else ''} into it")


def image_digest(image: Image.Image) -> str:
    """SHA-256 of an RGB image's size and pixels (so a renamed or re-saved file matches)."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


# Options added after checkpoints were first written, with the value that means "as before":
# an identity leaves them out at that value, so older checkpoints of the same run still match.
LATER_OPTIONS = {"style_weights": None, "preserve_color": False, "pyramid_levels": 0,
                 "learning_rate": None, "palette_weight": None, "tile": None, **ADDED_OFF}
IMAGES = ("content", "style", "content_guide", "style_guide")


def identity(content: Image.Image, style: Image.Image | Sequence[Image.Image], options: Any,
             guides: tuple[Image.Image, Image.Image] | None = None) -> dict[str, Any]:
    """What makes a run: the inputs' digests (the style: one digest, or a list with several
    style images; the guides' when given), every option (``Options``; the style weights
    normalised, colour preservation as its method), the package version."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    opts = options_dict(options, len(styles))
    for key, default in LATER_OPTIONS.items():
        if opts.get(key, default) == default:
            opts.pop(key, None)
    out = {"content": image_digest(content),
           "style": image_digest(styles[0]) if len(styles) == 1 else
           [image_digest(s) for s in styles], "options": opts, "version": __version__}
    if guides is not None:
        out["content_guide"], out["style_guide"] = (image_digest(g) for g in guides)
    return out


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for name in IMAGES:
        before, now = saved.get(name), current.get(name)
        if before == now:
            continue
        what = name.replace("_", " ")
        if name == "style" and (isinstance(before, list) or isinstance(now, list)):
            count = lambda v: len(v) if isinstance(v, list) else 1  # noqa: E731
            out.append(f"{count(before)} style image{'s' if count(before) != 1 else ''} "
                       f"(now {count(now)})"
                       if count(before) != count(now) else "different style images")
        elif before is None:
            out.append(f"no {what}")
        elif now is None:
            out.append(f"a {what} (now none)")
        else:
            out.append(f"a different {what}" + (" image" if "guide" not in name else ""))
    saved_opts, opts = saved.get("options", {}), current["options"]
    for key in opts:
        if key in saved_opts and saved_opts[key] != opts[key]:
            show = _shown if key in LATER_OPTIONS else str
            out.append(f"{key.replace('_', '-')} {show(saved_opts[key])} (now {show(opts[key])})")
        elif key not in saved_opts:
            if key in LATER_OPTIONS:
                out.append(f"{key.replace('_', '-')} {_shown(LATER_OPTIONS[key])} "
                           f"(now {_shown(opts[key])})")
            else:
                out.append(f"no {key.replace('_', '-')} option")
    for key in saved_opts:
        if key not in opts and key in LATER_OPTIONS:
            out.append(f"{key.replace('_', '-')} {_shown(saved_opts[key])} "
                       f"(now {_shown(LATER_OPTIONS[key])})")
    if saved.get("version") != current["version"]:
        out.append(f"ostransfer {saved.get('version')} (now {current['version']})")
    return out


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if value is False:
        return "off"
    if isinstance(value, list):
        return ",".join(f"{v:.3g}" for v in value)
    return str(value)


def path_in(folder: str | os.PathLike) -> Path:
    return Path(folder) / FILE


def exists(folder: str | os.PathLike) -> bool:
    return path_in(folder).is_file()


def read(folder: str | os.PathLike) -> tuple[dict[str, Any], RunState]:
    """(identity, state) of the checkpoint in ``folder``; CheckpointError if unusable."""
    path = path_in(folder)
    if not path.is_file():
        raise CheckpointError(f"{folder}: no checkpoint to resume ({FILE} is missing)")
    if not zipfile.is_zipfile(path):
        raise UnreadableCheckpoint(path, "damaged, or not written by ostransfer")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
        if meta.get("format") != FORMAT:
            raise UnreadableCheckpoint(path, f"of format {meta.get('format')}, not {FORMAT}: "
                                             f"made by another version of ostransfer")
        state = RunState(scale=int(meta["scale"]), rounds=int(meta["rounds"]),
                         evaluations=int(meta["evaluations"]), result=arrays.pop("result", None),
                         optimizer={k[len("opt_"):]: v for k, v in arrays.items()
                                    if k.startswith("opt_")},
                         scales=int(meta["scales"]), complete=bool(meta["complete"]))
        return meta["identity"], state
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file, whatever numpy or json says
        raise UnreadableCheckpoint(path, f"damaged ({type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:120]})") from None


def saved_tile(folder: str | os.PathLike) -> int | None:
    """The tile core a checkpointed run read its maps with (None: whole images, or no
    readable checkpoint: ``load`` then says why)."""
    try:
        saved, _ = read(folder)
    except CheckpointError:
        return None
    tile = saved.get("options", {}).get("tile")
    return tile if isinstance(tile, int) and not isinstance(tile, bool) else None


def load(folder: str | os.PathLike, expected: dict[str, Any]) -> RunState:
    """The state saved in ``folder``, if it was made with the same inputs and options."""
    saved, state = read(folder)
    differences = _differences(saved, expected)
    if differences:
        raise OtherRun(folder, differences)
    return state


class Checkpointer:
    """Writes a run's state into ``folder`` at every call of ``save``; ``due`` says when
    ``every`` seconds have passed since the last write (the run then saves at the next round).

    A write that fails (a full disk) is reported through ``warn`` and the run goes on. The
    partial files of a write killed in an earlier run (SIGKILL, a power cut) are removed."""

    def __init__(self, folder: str | os.PathLike, identity: dict[str, Any], every: float = 180.0,
                 warn: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.identity = identity
        self.every = every
        self.warn = warn or log.warning
        self.last = time.monotonic()
        self.saved: RunState | None = None  # the last state written
        remove_stale_partials(path_in(self.folder))

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def save(self, state: RunState) -> bool:
        meta = {"format": FORMAT, "identity": self.identity, "scale": state.scale,
                "rounds": state.rounds, "evaluations": state.evaluations,
                "scales": state.scales, "complete": state.complete, "saved": time.time()}
        arrays = {f"opt_{k}": np.asarray(v) for k, v in state.optimizer.items()}
        if state.result is not None:
            arrays["result"] = np.asarray(state.result, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(path_in(self.folder), buffer.getbuffer())
        except OSError as exc:
            self.warn(f"could not write the checkpoint in {self.folder} "
                      f"({exc.strerror or exc}); the run goes on")
            return False
        finally:
            self.last = time.monotonic()
        self.saved = state
        log.debug("checkpoint: %s", state.describe())
        return True
