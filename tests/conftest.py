"""Shared fixtures: the model files (exported on first use), the VGG16 weights, a save that
hangs half-way (for the partial-file tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ostransfer.nets.provision import ensure_models, fetch_weights
from ostransfer.nets.weights import load_vgg16_weights


@pytest.fixture(scope="session")
def model_dir():
    return ensure_models()


@pytest.fixture(scope="session")
def weights_path(model_dir):
    return fetch_weights()


@pytest.fixture(scope="session")
def vgg_weights(weights_path):
    return load_vgg16_weights(weights_path)


@pytest.fixture(scope="session")
def engine(model_dir):
    from ostransfer.nets.engine import VGGFeatures

    return VGGFeatures(model_dir=model_dir)


def _cuda_available() -> bool:
    from ostransfer.arrays import cuda_available

    return cuda_available()


@pytest.fixture(scope="session", params=[
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _cuda_available(),
                                                         reason="needs onnxruntime-gpu, CuPy and a CUDA GPU"))])
def device_engine(request, model_dir, engine):
    """The engine on every available backend (the GPU cases skip without one)."""
    if request.param == "cpu":
        return engine
    from ostransfer.nets.engine import VGGFeatures

    return VGGFeatures(device="cuda", model_dir=model_dir)


@pytest.fixture(scope="session")
def torch_vgg64(vgg_weights):
    torch = pytest.importorskip("torch")
    from ostransfer.research.torch_reference import TorchVGG16

    return TorchVGG16(vgg_weights, dtype=torch.float64)


@pytest.fixture(scope="session")
def torch_vgg32(vgg_weights):
    torch = pytest.importorskip("torch")
    from ostransfer.research.torch_reference import TorchVGG16

    return TorchVGG16(vgg_weights, dtype=torch.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


HANG_IN_SAVE = """
import sys, time
from pathlib import Path
import numpy as np
from PIL import Image
from ostransfer.imaging.io import save
def hang(self, fp, *args, **kwargs):
    fp.write(b"half an image")
    fp.flush()
    Path(sys.argv[2]).touch()
    time.sleep(600)
Image.Image.save = hang
save(np.zeros((4, 4, 3), np.float32), sys.argv[1])
"""


def _hang_in_save(out: Path, ready: Path) -> subprocess.Popen:
    """A process that stops in the middle of saving ``out`` (touching ``ready`` there)."""
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_SAVE, str(out), str(ready)])
    end = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < end
        time.sleep(0.01)
    return proc


@pytest.fixture
def hang_in_save():
    """Start a process that stops in the middle of a save (see ``_hang_in_save``)."""
    return _hang_in_save
