"""PNG line charts of loss curves, drawn with matplotlib (part of the ``compare`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence


def line_chart(path: str | Path, series: dict[str, Sequence[float]], title: str = "",
               xlabel: str = "", ylabel: str = "", vlines: Iterable[float] = ()) -> Path:
    """Write a PNG line chart of one or more series (y values against 1, 2, 3, ...).

    ``vlines``: x positions of dashed vertical markers (e.g. new sample sets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name)
    for x in vlines:
        ax.axvline(x, color="0.7", linestyle="--", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
