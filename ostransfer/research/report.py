"""Report helpers of the research commands: relative differences and JSON that tolerates
NumPy values and non-finite numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

def rel_diff(a: float, b: float) -> float:
    """|a - b| / |b| (absolute difference when b is 0)."""
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def to_jsonable(value: Any) -> Any:
    """numpy scalars and arrays, Paths, NaN/inf -> plain JSON values (NaN and inf as None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2)
