"""The array namespace and the device: which array library a run computes with.

The losses, the sampling and the objective are written for the Array API standard (SciPy's
convention): a public entry takes ``xp = array_namespace(x)`` once and helpers take
``*, xp``. NumPy serves the CPU, CuPy a CUDA GPU; the tests run the loss code on
``array_api_strict`` to prove it uses nothing CuPy lacks. This module is the one place that
resolves ``device="auto"``, maps a device to its namespace, and copies an array to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_array

Array = Any
DEVICES = ("auto", "cpu", "cuda")
GPU_EXTRA = "pip install 'ostransfer[gpu]'"

__all__ = ["Array", "DEVICES", "array_namespace", "cuda_available", "namespace", "resolve_device",
           "to_numpy"]


def cuda_available() -> bool:
    """True when onnxruntime-gpu offers the CUDA provider and CuPy sees a device."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - CuPy missing or no driver: no GPU
        return False


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; "cpu" and "cuda" as given.
    ValueError (one line) for anything else."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


def namespace(device: str) -> Any:
    """The array module of a resolved device: numpy for "cpu", cupy for "cuda"."""
    if device == "cuda":
        import cupy

        return cupy
    return np


def to_numpy(array: Array) -> np.ndarray:
    """A host (NumPy) copy of an array of any namespace; NumPy arrays are returned as they are."""
    if is_cupy_array(array):
        return array.get()
    return np.asarray(array)
