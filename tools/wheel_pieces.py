#!/usr/bin/env python3
"""Files too big for one trip to the GPU machine, cut into pieces that travel one per run.

The device tool carries at most 64 MiB per run, the working tree included, and a machine
keeps what earlier runs left only while it stays warm (about 30 s between runs). So the
files the GPU check needs (the onnxruntime-gpu wheel, 255 MB; the VGG16 weights, 59 MB;
small wheels and graph files) are packed into one bundle (a tar, xz-compressed if asked),
cut into pieces that each fit beside the tree, and described by ``index.json`` (the sha256
of every piece, of the bundle and of every member). Each run carries the index and one
piece; ``receive`` there moves the piece out of the checkout into a stash; once the stash
holds them all, ``unpack`` joins them, checks every digest and extracts the members.

    python tools/wheel_pieces.py pack --out .whl/gpu FILE...   # here: pieces + index.json
    python tools/wheel_pieces.py plan --out .whl/gpu           # here: the carry list per run
    python tools/wheel_pieces.py receive --out .whl/gpu --stash DIR   # there: stash pieces
    python tools/wheel_pieces.py unpack --stash DIR --into DIR        # there: join, check, extract

Exit codes: 0 done (``receive``: every piece is in the stash); 3 (``receive``) pieces still
missing; 1 a digest does not match or a file is missing; 2 bad arguments.
Only the standard library: it runs where nothing else is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from contextlib import nullcontext
from pathlib import Path

FORMAT = "ostransfer-pieces/1"
INDEX = "index.json"
MIB = 2 ** 20
BUDGET_MIB = 64  # what one run of the device tool carries, the working tree included
MARGIN = MIB  # for the index and what the tree may gain before the runs
CHUNK = 4 * MIB


class PiecesError(Exception):
    """A digest that does not match, a missing file: one line, exit code 1."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def tree_bytes(root: Path) -> int:
    """What the device tool sends besides the carried paths: tracked files, untracked files
    git does not ignore, and the checkout's shared/ folder. (Not a git checkout: every file
    but those of the usual ignored folders.)"""
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                  "--exclude-standard"], cwd=root, capture_output=True, check=True)
        names = {n for n in listing.stdout.decode().split("\0") if n}
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".whl", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis"}
        names = {str(p.relative_to(root)) for p in root.rglob("*")
                 if not skip.intersection(p.relative_to(root).parts)}
    total = sum((root / n).stat().st_size for n in names if (root / n).is_file()
                and not (root / n).is_symlink())
    shared = root / "shared"
    if shared.is_dir() and not shared.is_symlink():
        total += sum(p.stat().st_size for p in shared.rglob("*") if p.is_file()
                     and not p.is_symlink() and str(p.relative_to(root)) not in names)
    return total


def stored_wheel(source: Path, target: Path) -> None:
    """The same wheel with its members stored, not deflated (same names, order, bytes and
    RECORD), so that xz sees the raw libraries; pip installs it like the original."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.external_attr, copy.create_system = info.external_attr, info.create_system
            copy.compress_type, copy.file_size = zipfile.ZIP_STORED, info.file_size
            with src.open(info) as data, dst.open(copy, "w") as f:
                shutil.copyfileobj(data, f, CHUNK)


class _PieceWriter(io.RawIOBase):
    """A write-only stream cut into files of `size` bytes, hashing each and the whole."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = folder, size
        self.pieces: list[dict] = []
        self.whole = hashlib.sha256()
        self.total = 0
        self._file = None
        self._digest = None
        self._written = 0

    def writable(self) -> bool:
        return True

    def _close_piece(self) -> None:
        if self._file is not None:
            self._file.close()
            self.pieces[-1].update(size=self._written, sha256=self._digest.hexdigest())
            self._file = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            if self._file is None or self._written == self.size:
                self._close_piece()
                name = f"part-{len(self.pieces):02d}"
                self.pieces.append({"name": name})
                self._file = open(self.folder / name, "wb")  # noqa: SIM115 - closed in _close_piece
                self._digest, self._written = hashlib.sha256(), 0
            take = min(len(view) - done, self.size - self._written)
            block = view[done:done + take]
            self._file.write(block)
            self._digest.update(block)
            self.whole.update(block)
            self._written += take
            self.total += take
            done += take
        return done

    def close(self) -> None:
        self._close_piece()
        super().close()


def pack(files: list[Path], out: Path, piece_bytes: int | None, compress: str,
         root: Path, budget: int) -> dict:
    tree = tree_bytes(root)
    size = piece_bytes or budget - tree - MARGIN
    if size < 1 or (piece_bytes is None and size < MIB) or size + tree > budget:
        raise PiecesError(f"pieces of {size / MIB:.1f} MiB beside the working tree "
                          f"({tree / MIB:.1f} MiB) do not fit in {budget / MIB:.0f} MiB")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise PiecesError(f"no such file: {', '.join(missing)}")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise PiecesError("two files of the same name")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*"):
        old.unlink()
    members = []
    staging = out / ".staging"
    staging.mkdir(exist_ok=True)
    writer = _PieceWriter(out, size)
    try:
        compressed = (lzma.open(writer, "wb", preset=9)  # noqa: SIM115 - entered just below
                      if compress == "xz" else nullcontext(writer))
        with compressed as stream, \
                tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for f in files:
                source_digest = sha256_file(f)
                path = f
                if compress == "xz" and f.suffix == ".whl":
                    path = staging / f.name
                    stored_wheel(f, path)
                entry = {"name": f.name, "size": path.stat().st_size,
                         "sha256": sha256_file(path), "source_sha256": source_digest,
                         "source_size": f.stat().st_size}
                info = tar.gettarinfo(str(path), arcname=f.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with open(path, "rb") as data:
                    tar.addfile(info, data)
                members.append(entry)
                if path != f:
                    path.unlink()
    finally:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    index = {"format": FORMAT, "compression": compress, "bundle_size": writer.total,
             "bundle_sha256": writer.whole.hexdigest(), "piece_bytes": size,
             "tree_bytes": tree, "budget_bytes": budget, "pieces": writer.pieces,
             "members": members}
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def load_index(folder: Path) -> dict:
    path = folder / INDEX
    if not path.is_file():
        raise PiecesError(f"{path} is missing (carry it with every piece)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise PiecesError(f"{path} is not a {FORMAT} index")
    return index


def plan_lines(index: dict, out: Path, root: Path) -> list[str]:
    rel = os.path.relpath(out, root)
    tree = tree_bytes(root)
    lines = [(f"{len(index['pieces'])} runs; the working tree is {tree / MIB:.2f} MiB now "
              f"({index['tree_bytes'] / MIB:.2f} MiB when packed)")]
    index_size = (out / INDEX).stat().st_size
    for piece in index["pieces"]:
        total = tree + piece["size"] + index_size
        flag = "" if total <= index["budget_bytes"] else "  OVER THE BUDGET: pack again"
        lines.append(f'carry ["{rel}/{INDEX}", "{rel}/{piece["name"]}"]: '
                     f"{total / MIB:.2f} MiB of {index['budget_bytes'] / MIB:.0f}{flag}")
    return lines


def verify_local(index: dict, out: Path) -> list[str]:
    """Names of the pieces in `out` that are missing or damaged."""
    bad = []
    for piece in index["pieces"]:
        path = out / piece["name"]
        if not path.is_file() or path.stat().st_size != piece["size"] \
                or sha256_file(path) != piece["sha256"]:
            bad.append(piece["name"])
    return bad


def receive(out: Path, stash: Path) -> tuple[list[str], list[str]]:
    """Move the pieces carried in `out` into `stash` (checked); (received now, still missing)."""
    index = load_index(out)
    stash.mkdir(parents=True, exist_ok=True)
    known = stash / INDEX
    if known.is_file() and json.loads(known.read_text())["bundle_sha256"] != index["bundle_sha256"]:
        for old in stash.glob("part-*"):  # pieces of another bundle
            old.unlink()
    shutil.copyfile(out / INDEX, known)
    received = []
    for piece in index["pieces"]:
        path = out / piece["name"]
        if not path.is_file():
            continue
        if path.stat().st_size != piece["size"] or sha256_file(path) != piece["sha256"]:
            raise PiecesError(f"{path}: size or sha256 differs from the index")
        shutil.move(str(path), stash / piece["name"])
        received.append(piece["name"])
    return received, verify_local(index, stash)


class _JoinedReader(io.RawIOBase):
    """The pieces read back to back as one stream, hashed on the way."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)
        self.digest = hashlib.sha256()
        self._file = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._file is None:
                if not self.paths:
                    return 0
                self._file = open(self.paths.pop(0), "rb")  # noqa: SIM115 - closed below
            n = self._file.readinto(buffer)
            if n:
                self.digest.update(memoryview(buffer)[:n])
                return n
            self._file.close()
            self._file = None


def unpack(stash: Path, into: Path) -> list[Path]:
    index = load_index(stash)
    missing = verify_local(index, stash)
    if missing:
        raise PiecesError(f"pieces missing or damaged in {stash}: {', '.join(missing)}")
    into.mkdir(parents=True, exist_ok=True)
    reader = _JoinedReader([stash / p["name"] for p in index["pieces"]])
    raw = io.BufferedReader(reader, CHUNK)
    expected = {m["name"]: m for m in index["members"]}
    written = []
    decompressed = (lzma.open(raw, "rb")  # noqa: SIM115 - entered just below
                    if index["compression"] == "xz" else nullcontext(raw))
    with decompressed as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if info.name not in expected or not info.isfile():
                raise PiecesError(f"unexpected member {info.name!r} in the bundle")
            target = into / info.name
            digest = hashlib.sha256()
            with tar.extractfile(info) as data, open(target, "wb") as f:
                while block := data.read(CHUNK):
                    digest.update(block)
                    f.write(block)
            if digest.hexdigest() != expected[info.name]["sha256"]:
                raise PiecesError(f"{info.name}: sha256 differs from the index")
            written.append(target)
        while stream.read(CHUNK):  # the tar's end padding: the bundle digest covers every byte
            pass
    if reader.digest.hexdigest() != index["bundle_sha256"]:
        raise PiecesError("the joined pieces differ from the bundle that was packed")
    if sorted(p.name for p in written) != sorted(expected):
        raise PiecesError("members missing from the bundle")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="bundle FILEs into pieces + index.json in --out")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compress", choices=("none", "xz"), default="none",
                   help="xz: wheels stored uncompressed inside, the bundle xz -9")
    p.add_argument("--piece-mib", type=float, help="piece size (default: what the budget "
                   "leaves beside the working tree)")
    p.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    p.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout that travels")
    p = sub.add_parser("plan", help="the carry list of each run, with its size")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root", type=Path, default=Path.cwd())
    p = sub.add_parser("check", help="check the pieces in --out against the index")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("receive", help="move carried pieces into the stash")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stash", type=Path, required=True)
    p = sub.add_parser("unpack", help="join the stash's pieces, check, extract")
    p.add_argument("--stash", type=Path, required=True)
    p.add_argument("--into", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            budget = int(args.budget_mib * MIB)
            piece = int(args.piece_mib * MIB) if args.piece_mib else None
            index = pack(args.files, args.out, piece, args.compress, args.root.resolve(), budget)
            sizes = sum(m["source_size"] for m in index["members"])
            print(f"packed {len(index['members'])} files ({sizes / MIB:.1f} MiB) into "
                  f"{len(index['pieces'])} pieces ({index['bundle_size'] / MIB:.1f} MiB, "
                  f"{args.compress}) in {args.out}")
            for line in plan_lines(index, args.out.resolve(), args.root.resolve()):
                print(line)
        elif args.command == "plan":
            for line in plan_lines(load_index(args.out), args.out.resolve(), args.root.resolve()):
                print(line)
        elif args.command == "check":
            bad = verify_local(load_index(args.out), args.out)
            if bad:
                raise PiecesError(f"missing or damaged: {', '.join(bad)}")
            print(f"every piece in {args.out} matches the index")
        elif args.command == "receive":
            received, missing = receive(args.out, args.stash)
            total = len(load_index(args.stash)["pieces"])
            print(f"received {', '.join(received) or 'no piece'}; the stash {args.stash} holds "
                  f"{total - len(missing)} of {total}"
                  + (f"; still to carry: {', '.join(missing)}" if missing else ""))
            return 3 if missing else 0
        else:
            for path in unpack(args.stash, args.into):
                print(path)
    except PiecesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
