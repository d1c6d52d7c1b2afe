"""Where a measurement ran: the host, its libraries and this process's peak memory, so that
results from different machines can be told apart."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

def torch_available() -> bool:
    """True when torch can be imported (checked without importing it)."""
    return find_spec("torch") is not None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def host_info(device: str | None = None) -> dict[str, Any]:
    """Where a measurement ran: platform, CPU, cores, memory, load, library versions."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                                if f in flags]
                info["virtualised"] = "hypervisor" in flags
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    try:
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    import onnxruntime

    info["versions"] = {name: _version(name) for name in
                        ("ostransfer", "numpy", "scipy", "onnxruntime", "onnxruntime-gpu",
                         "torch", "cupy-cuda13x", "cupy-cuda12x")
                        if _version(name) is not None}
    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    if device is not None:
        info["device"] = device
    if device == "cuda":
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            name = props["name"]
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - informational only
            pass
    return info


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM) in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
