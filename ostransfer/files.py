"""Small file helpers every layer shares: atomic writes that can refuse to replace a file,
their temporary ("partial") files and the clean-up of those a killed run left, file-name
limits, checksums, the shipped sample images."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import time
from importlib import resources
from pathlib import Path
from typing import Callable, IO

log = logging.getLogger(__name__)

DATA_PACKAGE = "ostransfer"
NAME_MAX = 255  # bytes of one file name, where the file system does not say
PARTIAL = ".partial"
# ".<name>.<pid>-<8 hex digits>.partial": the pid (up to 10 digits) tells a stale one
_PARTIAL_RESERVE = len(".") + len(".") + 10 + len("-") + 8 + len(PARTIAL)
_PARTIAL_NAME = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d{1,10})-[0-9a-f]{8}\.partial$", re.DOTALL)
_NO_HARD_LINKS = {errno.EPERM, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EPERM),
                  getattr(errno, "EOPNOTSUPP", errno.EPERM)}
STALE_WITHOUT_PIDS = 24 * 3600.0  # where a pid cannot be checked: partials older than this


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_of(path: str | os.PathLike) -> Path:
    """The folder a path's file is in (``.`` for a bare name)."""
    parent = Path(path).parent
    return parent if str(parent) else Path(".")


def name_limit(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` takes (255 if unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
        return NAME_MAX


def name_bytes(name: str) -> int:
    """Length of a file name as the file system counts it (bytes)."""
    return len(os.fsencode(name))


def fit_name(stem: str, tail: str, limit: int) -> str:
    """``stem + tail``, the stem shortened by whole characters so that it fits ``limit`` bytes
    (``tail``, e.g. ``.interrupted-64px.png``, is kept whole)."""
    room = limit - name_bytes(tail)
    while stem and name_bytes(stem) > room:
        stem = stem[:-1]
    return stem + tail


def _partial_base(name: str, limit: int) -> str:
    """The part of a partial file's name that names its target (shortened to fit)."""
    return fit_name(name, "", limit - _PARTIAL_RESERVE)


def partial_path(path: str | os.PathLike) -> Path:
    """A new hidden name next to ``path`` for its data while they are written:
    ``.<name>.<pid>-<random>.partial``, the name shortened so that it fits the file system's
    limit (a name that fits is never made too long by this)."""
    path = Path(path)
    base = _partial_base(path.name, name_limit(folder_of(path)))
    return path.with_name(f".{base}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")


def _create_partial(path: Path) -> tuple[int, Path]:
    """(fd, name) of a new partial file of ``path``, created exclusively, mode 0o600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = partial_path(path)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None] | bytes | memoryview,
                 *, replace: bool = True) -> Path:
    """Write a file so that readers see the old file or the whole new one, never a part.

    ``write`` is the bytes, or a function that writes into the open binary file. The data go
    to a partial file in the target's folder (``partial_path``), are flushed to disk, get the
    mode a plain open() would give (the replaced file's, else 0o666 less the umask) and are
    published (``publish``): renamed over the target, or with ``replace=False`` put there only
    if nothing is there (FileExistsError otherwise, also for a dangling symlink). On any error
    the partial file is removed and the error propagates."""
    path = Path(path)
    fd, tmp = _create_partial(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        publish(tmp, path, replace=replace)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def publish(source: str | os.PathLike, target: str | os.PathLike, *, replace: bool) -> None:
    """Move the finished file ``source`` to ``target`` in one step (same folder).

    replace=True: renamed over whatever is there. replace=False: never replaces anything, even
    if it appears at the last moment: a hard link claims the name (FileExistsError if it is
    taken), then ``source`` is removed. Where the file system has no hard links (FAT, some
    network file systems), an empty file claims the name exclusively and ``source`` is renamed
    over it: for that instant a reader may see an empty file."""
    if replace:
        os.replace(source, target)
        return
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            os.replace(source, target)
        except BaseException:
            os.unlink(target)  # our empty claim
            raise
        return
    try:
        os.unlink(source)
    except OSError as exc:  # published all the same; only a second name is left
        log.warning("could not remove %s (%s)", source, exc)


def stale_partials(path: str | os.PathLike) -> list[Path]:
    """The partial files of ``path`` that no running process will finish: left by a run
    that was killed (SIGKILL, a power cut) while it wrote ``path``."""
    path = Path(path)
    folder = folder_of(path)
    base = _partial_base(path.name, name_limit(folder))
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _PARTIAL_NAME.match(entry.name)
        if match and match["base"] == base and not _writer_running(int(match["pid"]), entry):
            found.append(folder / entry.name)
    return found


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove ``stale_partials(path)``; returns those removed (a failure is only logged)."""
    removed = []
    for stale in stale_partials(path):
        try:
            stale.unlink()
        except OSError as exc:
            log.warning("could not remove the stale partial file %s (%s)", stale, exc)
            continue
        log.info("removed %s, a partial file of %s left by a killed run", stale, path)
        removed.append(stale)
    return removed


def _writer_running(pid: int, entry: os.DirEntry) -> bool:
    """Whether the process that named a partial file ``pid`` may still be writing it."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process there: go by age
        try:
            return time.time() - entry.stat(follow_symlinks=False).st_mtime < STALE_WITHOUT_PIDS
        except OSError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process of that pid is running
        return True
    return True


def _file_mode(path: Path) -> int:
    """The mode a plain open() would give (partial files are made 0o600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def sample_image(name: str) -> Path:
    """A sample image shipped in the package's ``data`` folder (see its SOURCES.md)."""
    return Path(str(resources.files(DATA_PACKAGE).joinpath("data", name)))
