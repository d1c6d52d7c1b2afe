"""ONNX Runtime settings every session of the package shares: one thread pool and one CPU
memory arena per process."""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os

import onnxruntime as ort

log = logging.getLogger(__name__)

_ENVIRONMENT_THREADS: int | None = None
_CUDA_PRELOADED = False


def _configure_environment(threads: int) -> bool:
    """Once per process, before the first session: one intra-op thread pool and one CPU
    memory arena shared by every session. Two sessions that alternate otherwise keep two
    pools (whose spinning workers steal each other's cores) and two arenas (each keeping
    its own high-water mark: 2.5 GB instead of 1.3 GB at 512 px). Returns False when the
    ONNX Runtime environment already exists (then each session keeps its own)."""
    global _ENVIRONMENT_THREADS
    if _ENVIRONMENT_THREADS is not None:
        return True
    try:
        ort.set_global_thread_pool_sizes(threads, 1)
        arena = ort.OrtArenaCfg({"max_mem": 0, "arena_extend_strategy": -1,
                                 "initial_chunk_size_bytes": -1, "max_dead_bytes_per_chunk": -1,
                                 "initial_growth_chunk_size_bytes": -1,
                                 "max_power_of_two_extend_bytes": -1})
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                   ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, arena)
    except Exception as exc:  # noqa: BLE001 - an environment made elsewhere: fall back
        log.debug("shared ONNX Runtime thread pool/arena unavailable: %s", exc)
        return False
    _ENVIRONMENT_THREADS = threads
    return True


def release_free_heap() -> None:
    """Give the heap that model loading used back to the OS (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one, e.g. a
    container's share), the default thread count of a run and of a batch's workers."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options for a CPU or CUDA session: full graph optimisation, quiet logs, the shared
    thread pool and arena (``threads`` intra-op threads, default all cores) where the
    process can have them, else a pool of its own that does not spin."""
    threads = threads or usable_cores()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if _configure_environment(threads):
        options.use_per_session_threads = False
        options.add_session_config_entry("session.use_env_allocators", "1")
    else:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Sessions that alternate: spinning workers of one would steal the other's cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def preload_cuda_libraries() -> None:
    """Once per process, before the first CUDA session: load the CUDA 13 and cuDNN 9
    libraries of the nvidia pip packages (``onnxruntime.preload_dlls``, ORT >= 1.21); the
    CUDA provider has no search path of its own and finds them otherwise only on
    LD_LIBRARY_PATH or already loaded (by CuPy or torch). What it prints goes to the debug
    log; a library it cannot load shows as a CUDA provider that does not start."""
    global _CUDA_PRELOADED
    if _CUDA_PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _CUDA_PRELOADED = True
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - a preload that fails is reported by the session
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    if printed.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", printed.getvalue().strip())
