"""A PNG line chart of loss curves (matplotlib when installed, else Pillow's ImageDraw)."""

from __future__ import annotations

import math
from importlib.util import find_spec
from pathlib import Path
from typing import Iterable, Sequence

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def line_chart(path: str | Path, series: dict[str, Sequence[float]], title: str = "",
               xlabel: str = "", ylabel: str = "", vlines: Iterable[float] = ()) -> Path:
    """Write a PNG line chart of one or more series (y values against 1, 2, 3, ...).

    Uses matplotlib when it is installed, else draws axes, ticks, polylines and a legend
    with Pillow. ``vlines``: x positions of dashed vertical markers (e.g. new sample sets)."""
    path = Path(path)
    vlines = list(vlines)
    if find_spec("matplotlib") is not None:
        try:
            return _line_chart_matplotlib(path, series, title, xlabel, ylabel, vlines)
        except Exception:  # noqa: BLE001 - a broken matplotlib backend: fall back to Pillow
            pass
    return _line_chart_pillow(path, series, title, xlabel, ylabel, vlines)


def _line_chart_matplotlib(path, series, title, xlabel, ylabel, vlines) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for (name, ys), colour in zip(series.items(), COLOURS):
        ax.plot(range(1, len(ys) + 1), ys, label=name, color=[c / 255 for c in colour])
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


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _line_chart_pillow(path, series, title, xlabel, ylabel, vlines) -> Path:
    from PIL import Image, ImageDraw

    width, height = 900, 560
    left, right, top, bottom = 90, 30, 50, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    n_max = max((len(ys) for ys in series.values()), default=1)
    y_lo, y_hi = (min(values), max(values)) if values else (0.0, 1.0)
    if y_hi <= y_lo:
        pad = abs(y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    pad = (y_hi - y_lo) * 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = 1.0, max(2.0, float(n_max))
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * pw, top + (y_hi - y) / (y_hi - y_lo) * ph)

    # grid, ticks and labels
    for y in _nice_ticks(y_lo, y_hi):
        _, yy = px(x_lo, y)
        draw.line([(left, yy), (left + pw, yy)], fill=(230, 230, 230))
        label = f"{y:.4g}"
        tw = draw.textlength(label, font=small)
        draw.text((left - 8 - tw, yy - 7), label, fill="black", font=small)
    for x in _nice_ticks(x_lo, x_hi):
        xx, _ = px(x, y_lo)
        draw.line([(xx, top + ph), (xx, top + ph + 5)], fill="black")
        label = f"{x:g}"
        tw = draw.textlength(label, font=small)
        draw.text((xx - tw / 2, top + ph + 8), label, fill="black", font=small)
    for x in vlines:
        xx, _ = px(x, y_lo)
        for y0 in range(top, top + ph, 10):
            draw.line([(xx, y0), (xx, min(y0 + 5, top + ph))], fill=(170, 170, 170))
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    # series
    for (name, ys), colour in zip(series.items(), COLOURS):
        points = [px(i + 1, v) for i, v in enumerate(ys) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2, joint="curve")
        elif points:
            x, y = points[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    # titles
    tw = draw.textlength(title, font=font)
    draw.text(((width - tw) / 2, 15), title, fill="black", font=font)
    tw = draw.textlength(xlabel, font=small)
    draw.text((left + (pw - tw) / 2, height - 30), xlabel, fill="black", font=small)
    if ylabel:
        label = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4, 18), "white")
        ImageDraw.Draw(label).text((2, 1), ylabel, fill="black", font=small)
        label = label.rotate(90, expand=True)
        image.paste(label, (8, top + (ph - label.size[1]) // 2))
    # legend
    lx, ly = left + pw - 10, top + 10
    names = list(series)
    box_w = max((draw.textlength(n, font=small) for n in names), default=0) + 46
    draw.rectangle([lx - box_w, ly, lx, ly + 22 * len(names) + 6], fill="white", outline=(180, 180, 180))
    for i, (name, colour) in enumerate(zip(names, COLOURS)):
        y = ly + 14 + 22 * i
        draw.line([(lx - box_w + 8, y), (lx - box_w + 34, y)], fill=colour, width=3)
        draw.text((lx - box_w + 40, y - 8), name, fill="black", font=small)
    image.save(path, format="PNG")
    return path
