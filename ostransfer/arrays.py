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

__all__ = ["DEVICES", "Array", "DeviceError", "array_namespace", "cuda_available", "cuda_problems",
           "device_error", "namespace", "resolve_device", "to_numpy"]


class DeviceError(ValueError):
    """``device="cuda"`` asked for where the GPU path cannot run (CuPy, onnxruntime-gpu or a
    CUDA device missing): one line that says what is missing and what to install."""


def cuda_problems() -> list[str]:
    """What keeps the CUDA path from running here (empty when nothing does): onnxruntime
    without its CUDA provider (the CPU build), CuPy missing, or no CUDA device."""
    import onnxruntime

    problems = []
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        problems.append(f"onnxruntime {onnxruntime.__version__} has no CUDA provider "
                        "(the CPU build; onnxruntime-gpu replaces it)")
    try:
        import cupy
    except ImportError:
        problems.append("CuPy is not installed")
    else:
        try:
            if cupy.cuda.runtime.getDeviceCount() == 0:
                problems.append("CuPy sees no CUDA device")
        except Exception as exc:  # noqa: BLE001 - no driver, no device: one reason line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(f"CuPy sees no CUDA device ({reason})")
    return problems


def cuda_available() -> bool:
    """True when onnxruntime-gpu offers the CUDA provider and CuPy sees a device."""
    return not cuda_problems()


def device_error(problem: str) -> DeviceError:
    """The one-line error for a CUDA path that cannot run, naming the install command."""
    return DeviceError(f'device "cuda" cannot run here: {problem}; '
                       f"install the GPU extra: {GPU_EXTRA}")


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; "cpu" as given; "cuda" when the
    GPU path can run, else DeviceError (what is missing, what to install). ValueError (one
    line) for any other name."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda":
        problems = cuda_problems()
        if problems:
            raise device_error("; ".join(problems))
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
