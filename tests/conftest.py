"""Shared fixtures: the model files (exported on first use) and the VGG16 weights."""

from __future__ import annotations

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
