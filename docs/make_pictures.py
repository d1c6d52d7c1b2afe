"""Render the README's pictures: content/style pairs, guided transfer, colour preservation and
style mixing.

    python docs/make_pictures.py [--size 192] [--only pairs,guided,color,mix]

Writes docs/pairs.jpg (default options at --pairs-size), docs/guided.png,
docs/preserve_color.png, docs/style_mix.png and the guide images docs/guide_coffee.png and
docs/guide_styles.png (plus the two-style image they guide, in a temporary folder). CPU
minutes: a handful per section. The content-weight sweeps are rendered by the CLI
(`ostransfer sweep`, see docs/defaults.md)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import ostransfer
from ostransfer.files import sample_image
from ostransfer.imaging.color import preserve_colors
from ostransfer.imaging.grid import labelled_row
from ostransfer.imaging.guides import colour_map
from ostransfer.imaging.io import load_pil, resize, to_array
from ostransfer.run.job import load_guides

DOCS = Path(__file__).resolve().parent
CAT, COFFEE = sample_image("content_chelsea.jpg"), sample_image("content_coffee.jpg")
STARRY, WAVE = sample_image("style_starry_night.jpg"), sample_image("style_great_wave.jpg")
INPUTS = DOCS / "inputs"  # README-only inputs, see inputs/SOURCES.md
PAIRS = [(CAT, STARRY), (COFFEE, WAVE), (INPUTS / "content_astronaut.jpg", INPUTS / "style_kandinsky.jpg"),
         (CAT, INPUTS / "style_scream.jpg")]
TABLE, CUP = (40, 60, 200), (250, 200, 40)  # guide colours


def coffee_guide() -> Image.Image:
    """The cup, saucer and spoon (yellow) against the table (blue), drawn by hand."""
    size = load_pil(COFFEE).size
    guide = Image.new("RGB", size, TABLE)
    draw = ImageDraw.Draw(guide)
    draw.ellipse([64, 62, 410, 333], fill=CUP)  # saucer
    draw.ellipse([146, 14, 350, 182], fill=CUP)  # cup rim
    draw.rectangle([152, 98, 344, 250], fill=CUP)  # cup body
    draw.polygon([(338, 70), (345, 56), (360, 58), (362, 80), (352, 110), (340, 110)], fill=CUP)
    return guide


def two_styles(height: int = 284) -> tuple[Image.Image, Image.Image]:
    """Starry Night and the Great Wave side by side, and its guide: Starry Night pairs with
    the table's colour, the Great Wave with the cup's."""
    starry, wave = load_pil(STARRY), load_pil(WAVE)
    starry = resize(starry, (round(starry.width * height / starry.height), height))
    wave = resize(wave, (round(wave.width * height / wave.height), height))
    both = Image.new("RGB", (starry.width + wave.width, height))
    both.paste(starry, (0, 0))
    both.paste(wave, (starry.width, 0))
    guide = Image.new("RGB", both.size, CUP)
    guide.paste(TABLE, (0, 0, starry.width, height))
    return both, guide


def save(array: np.ndarray, name: str) -> None:
    path = DOCS / name
    Image.fromarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)).save(path, optimize=True, quality=88)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


CACHE = Path(tempfile.gettempdir()) / "ostransfer-pictures"


def run(name: str, content, style, **options) -> np.ndarray:
    """A result, kept in CACHE under its name and options (so that the figures can be
    redrawn without running again)."""
    key = name + "-" + "-".join(f"{k}={options[k]}" for k in sorted(options)
                                if k not in ("content_guide", "style_guide"))
    path = CACHE / (key.replace(" ", "").replace("/", "_") + ".png")
    if path.is_file():
        return to_array(Image.open(path).convert("RGB"))
    start = time.perf_counter()
    image = ostransfer.stylize(content, style, device="cpu", **options)
    print(f"  {name}: {time.perf_counter() - start:.0f} s")
    CACHE.mkdir(exist_ok=True)
    image.save(path)
    return to_array(image)


TILE = 144  # figure row height, px (each figure under 300 KB)


def stack(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Rows of different widths one above the other on white, left-aligned."""
    width = max(r.shape[1] for r in rows)
    canvas = np.ones((sum(r.shape[0] + gap for r in rows) - gap, width, 3), np.float32)
    y = 0
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + gap
    return canvas


def pairs_figure(size: int) -> None:
    rows = []
    for content, style in PAIRS:
        result = run(f"{Path(content).stem}-{Path(style).stem}", content, style, size=size)
        rows.append(labelled_row([to_array(load_pil(content)), to_array(load_pil(style)), result],
                                 ["content", "style", f"{size} px, default options"],
                                 height=TILE + 48))
    save(stack(rows), "pairs.jpg")


def guided_figure(options: dict) -> None:
    guide = coffee_guide()
    style, style_guide = two_styles()
    guide.save(DOCS / "guide_coffee.png", optimize=True)
    style_guide.save(DOCS / "guide_styles.png", optimize=True)
    with tempfile.TemporaryDirectory() as tmp:
        style_path = Path(tmp) / "starry_and_wave.png"
        style.save(style_path)
        guided = run("guided", COFFEE, style_path, content_guide=guide, style_guide=style_guide,
                     **options)
    guides = load_guides(guide, style_guide)
    masks = [colour_map(guides.content_labels, guides.pairs.content_colours),
             colour_map(guides.style_labels, guides.pairs.style_colours)]
    top = labelled_row([to_array(load_pil(COFFEE)), to_array(masks[0]), guided],
                       ["content", "content guide (as read)", "guided result"], height=TILE + 16)
    bottom = labelled_row([to_array(style), to_array(masks[1])],
                          ["style: two paintings side by side", "style guide (as read)"],
                          height=round(TILE * 0.75))
    save(stack([top, bottom]), "guided.png")


def colour_and_mix_figures(options: dict, only: set[str]) -> None:
    starry = run("cat-starry", CAT, STARRY, **options)
    if "color" in only:
        content = to_array(load_pil(CAT))
        row = [content, starry, preserve_colors(starry, content, "luminance"),
               preserve_colors(starry, content, "statistics")]
        save(labelled_row(row, ["content", "stylised", "--preserve-color (luminance)",
                                "--color-method statistics"], height=TILE), "preserve_color.png")
    if "mix" in only:
        wave = run("cat-wave", CAT, WAVE, **options)
        mix = run("cat-mix", CAT, [STARRY, WAVE], style_weights=(0.5, 0.5), **options)
        save(labelled_row([starry, mix, wave],
                          ["Starry Night", "both, --style-weight 0.5,0.5", "Great Wave"],
                          height=TILE), "style_mix.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--evaluations", default=None, help="per scale (default: the run's)")
    parser.add_argument("--content-weight", type=float, default=None,
                        help="default: the default preset's")
    parser.add_argument("--pairs-size", type=int, default=256)
    parser.add_argument("--only", default="pairs,guided,color,mix")
    args = parser.parse_args()
    options: dict = dict(size=args.size)
    if args.evaluations:
        budgets = [int(v) for v in args.evaluations.split(",")]
        options["evaluations"] = budgets if len(budgets) > 1 else budgets[0]
    if args.content_weight is not None:
        options["content_weight"] = args.content_weight
    only = set(args.only.split(","))
    if "pairs" in only:
        pairs_figure(args.pairs_size)
    if "guided" in only:
        guided_figure(options)
    if "color" in only or "mix" in only:
        colour_and_mix_figures(options, only)


if __name__ == "__main__":
    main()
