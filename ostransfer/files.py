"""Small file helpers every layer shares: atomic writes, checksums, the shipped sample images."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable, IO

DATA_PACKAGE = "ostransfer"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None] | bytes | memoryview
                 ) -> Path:
    """Write a file so that readers see the old file or the whole new one, never a part.

    ``write`` is the bytes, or a function that writes into the open binary file. The data go
    to a temporary file in the target's folder, are flushed to disk, get the mode a plain
    open() would give (the replaced file's, else 0o666 less the umask) and are renamed over
    the target; on any error the temporary file is removed and the error propagates."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode a plain open() would give (mkstemp's files are 0o600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def sample_image(name: str) -> Path:
    """A sample image shipped in the package's ``data`` folder (see its SOURCES.md)."""
    return Path(str(resources.files(DATA_PACKAGE).joinpath("data", name)))
