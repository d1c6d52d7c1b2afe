"""The VGG16 feature engine: ONNX Runtime sessions for the forward maps and the input VJP.

``forward(image)`` runs the forward graph and keeps its 13 ReLU maps (the backward needs
them); ``backward(grads)`` takes upstream gradients for feature layers and returns
dloss/dimage. Outputs, inputs and zero gradients are bound once per image size (I/O
binding), so an evaluation allocates no new maps. On a GPU (onnxruntime-gpu + CuPy) the
buffers are CuPy arrays on the device and nothing crosses to the host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..arrays import Array, device_error, namespace, resolve_device
from . import vgg16_graphs
from .provision import ensure_models
from .runtime import preload_cuda_libraries, release_free_heap, session_options
from .vgg16 import FEATURE_LAYERS, LAYERS, map_shape

log = logging.getLogger(__name__)


def _check_cuda_provider(*sessions: ort.InferenceSession) -> None:
    """onnxruntime-gpu lists the CUDA provider even when it cannot load it (CUDA 13 or cuDNN 9
    libraries not found): the session then runs on the CPU provider alone, and binding CuPy
    pointers to it would fail later, obscurely. Say so at once."""
    for session in sessions:
        if "CUDAExecutionProvider" not in session.get_providers():
            raise device_error(
                "onnxruntime-gpu could not start its CUDA provider (are the CUDA 13 and "
                "cuDNN 9 libraries findable? onnxruntime.preload_dlls() or LD_LIBRARY_PATH)")


@dataclass
class _Buffers:
    """Everything bound for one image size."""

    image: Array  # (1, 3, H, W)
    maps: dict[str, Array]  # ReLU outputs of the forward, inputs of the backward
    zeros: dict[str, Array]  # gradients of feature layers nobody supplied
    grad_image: Array  # (1, 3, H, W)
    forward: ort.IOBinding
    backward: ort.IOBinding


class VGGFeatures:
    """Load the two sessions once; serve forward maps and input gradients.

    device: "cpu" or "cuda". threads: intra-op threads (default: all cores).
    Maps returned by ``forward`` are the engine's buffers: valid until the next forward at
    the same size; copy what must outlive it.
    """

    def __init__(self, device: str = "cpu", model_dir: Path | None = None,
                 threads: int | None = None):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}")
        self.device = device
        folder = Path(model_dir) if model_dir else ensure_models()
        options = session_options(threads)
        # Memory patterns pre-plan one block per input shape; with shared buffers bound by
        # the caller they only add to the peak (1.64 GB against 1.26 GB at 512 px).
        options.enable_mem_pattern = False
        if device == "cuda":
            resolve_device(device)  # DeviceError (what to install) without CuPy or onnxruntime-gpu
            self.xp = namespace(device)
            # TF32 (the CUDA provider's default on Ampere and later) rounds the convolutions'
            # inputs to 10 mantissa bits: the maps and gradients would lose float32 accuracy.
            cuda = {"device_id": str(self.xp.cuda.Device().id), "use_tf32": "0"}
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
            preload_cuda_libraries()
            vjp_file = vgg16_graphs.VJP_SCATTER_FILE  # the CUDA provider has no MaxUnpool
        else:
            self.xp = namespace(device)
            providers = ["CPUExecutionProvider"]
            vjp_file = vgg16_graphs.VJP_FILE
        self._forward = ort.InferenceSession(str(folder / vgg16_graphs.FORWARD_FILE), options,
                                             providers=providers)
        self._vjp = ort.InferenceSession(str(folder / vjp_file), options, providers=providers)
        if device == "cuda":
            _check_cuda_provider(self._forward, self._vjp)
        release_free_heap()
        self._buffers: _Buffers | None = None
        self.forwards = 0  # forward runs so far: whose maps the buffers hold
        log.debug("VGG16 sessions loaded from %s on %s", folder, device)

    # -- binding -------------------------------------------------------------------------
    def _bind(self, binding: ort.IOBinding, name: str, array: Array, output: bool) -> None:
        device_id = array.device.id if self.device == "cuda" else 0
        bind = binding.bind_output if output else binding.bind_input
        bind(name, self.device, device_id, np.float32, list(array.shape), self._ptr(array))

    def _ptr(self, array: Array) -> int:
        return array.data.ptr if self.device == "cuda" else array.ctypes.data

    def _buffers_for(self, height: int, width: int) -> _Buffers:
        b = self._buffers
        if b is not None and b.image.shape[2:] == (height, width):
            return b
        self._buffers = None  # free the previous size first
        xp = self.xp
        maps = {layer.name: xp.empty(map_shape(height, width, layer.channels, layer.pools),
                                     dtype=xp.float32) for layer in LAYERS}
        # xp.zeros (calloc) maps untouched zero pages: unused layers cost no memory
        zeros = {name: xp.zeros(maps[name].shape, dtype=xp.float32) for name in FEATURE_LAYERS}
        b = _Buffers(image=xp.empty((1, 3, height, width), dtype=xp.float32), maps=maps,
                     zeros=zeros, grad_image=xp.empty((1, 3, height, width), dtype=xp.float32),
                     forward=self._forward.io_binding(), backward=self._vjp.io_binding())
        self._bind(b.forward, "image", b.image, output=False)
        for name, array in maps.items():
            self._bind(b.forward, name, array, output=True)
            self._bind(b.backward, name, array, output=False)
        self._bind(b.backward, "grad_image", b.grad_image, output=True)
        self._buffers = b
        return b

    # -- public --------------------------------------------------------------------------
    def forward(self, image: Array) -> dict[str, Array]:
        """image (H, W, 3) float in [0, 1] -> {layer name: (1, C, h, w) map} for all 13 ReLUs."""
        height, width = image.shape[:2]
        if min(height, width) < 16:
            raise ValueError(f"image of {width}x{height} px is too small for VGG16 (at least 16 px)")
        b = self._buffers_for(height, width)
        b.image[0] = self.xp.moveaxis(self.xp.asarray(image, dtype=self.xp.float32), -1, 0)
        self._synchronize()
        self.forwards += 1  # before the run: a failed run leaves no buffers that look current
        self._forward.run_with_iobinding(b.forward)
        return b.maps

    def backward(self, grads: dict[str, Array]) -> Array:
        """Upstream gradients {feature layer: (1, C, h, w)} -> dloss/dimage (H, W, 3).

        Uses the maps of the last ``forward``. Layers left out count as zero. The returned
        array is the engine's buffer (valid until the next backward)."""
        b = self._buffers
        if b is None:
            raise RuntimeError("backward() needs a forward() first")
        for name in FEATURE_LAYERS:
            array = grads.get(name)
            if array is None:
                array = b.zeros[name]
            elif array.shape != b.zeros[name].shape or array.dtype != np.float32 \
                    or not array.flags.c_contiguous:
                raise ValueError(f"gradient for {name} must be C-contiguous float32 of shape "
                                 f"{b.zeros[name].shape}, got {array.dtype} {array.shape}")
            self._bind(b.backward, f"grad_{name}", array, output=False)
        self._synchronize()
        self._vjp.run_with_iobinding(b.backward)
        return self.xp.moveaxis(b.grad_image[0], 0, -1)

    def _synchronize(self) -> None:
        if self.device == "cuda":
            self.xp.cuda.get_current_stream().synchronize()
