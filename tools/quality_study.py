#!/usr/bin/env python3
"""Stylise content/style pairs and measure the results beside a reference implementation's.

For each pair, ostransfer runs with the given options (one process, the model loaded once),
the wall time is recorded, and `ostransfer evaluate`'s measures are taken of our result and
of the reference's output of the same pair (content LPIPS, style and colour sliced W1, mean
chroma; lower is better on the first three). Prints a table per pair and writes
OUT/LABEL/<pair>.png and OUT/LABEL/study.json.

    python tools/quality_study.py --images ../shared/images --anchors ../shared/anchors/futscdav \
        --out study --label default
    python tools/quality_study.py ... --label strotss -- preset=strotss content_weight=4

The reference outputs are named <content>_<style>_<reference size>.png after the image files'
stems without their content_/style_ prefix (futscdav's anchors: coffee_vangogh_starry_night_512.png);
each is measured at its own size, as ours is (the two can differ by a pixel of rounding),
except that one made at another --reference-size is resized to ours first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ostransfer.imaging.grid import labelled_row
from ostransfer.imaging.io import load_pil, resize, to_array, to_pil
from ostransfer.research.evaluate import run_evaluate
from ostransfer.run.stylizer import Stylizer

PAIRS = ("coffee:vangogh_starry_night", "chelsea:hokusai_great_wave",
         "astronaut:kandinsky_composition_vii", "coffee:seurat_grande_jatte_study",
         "chelsea:munch_scream", "astronaut:turner_shipwreck")


def parse_value(text: str):
    """An option value from the command line: int, float, a comma list of ints, or text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    if "," in text:
        return [parse_value(v) for v in text.split(",")]
    return text


def find(folder: Path, stem: str) -> Path:
    matches = sorted(folder.glob(f"{stem}.*"))
    if not matches:
        raise SystemExit(f"{folder}: no image {stem}.*")
    return matches[0]


def reference_output(args: argparse.Namespace, content_name: str, style_name: str) -> Path | None:
    """The reference's output of the pair in --anchors, or None (the pair is measured alone)."""
    if not args.anchors:
        return None
    matches = sorted(args.anchors.glob(f"{content_name}_{style_name}_{args.reference_size}.*"))
    if not matches:
        print(f"{args.anchors}: no reference output of {content_name} + {style_name}; ours alone")
    return matches[0] if matches else None


def run_pair(stylizer: Stylizer, pair: str, args: argparse.Namespace, options: dict) -> dict:
    content_name, style_name = pair.split(":")
    content = find(args.images, f"content_{content_name}")
    style = find(args.images, f"style_{style_name}")
    out = args.out / args.label / f"{content_name}_{style_name}_{args.size}.png"
    row = {"pair": pair, "output": str(out)}
    if out.exists() and args.skip_existing:
        row["seconds"] = json.loads(out.with_suffix(".json").read_text())["seconds"]
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        image = stylizer.stylize(content, style, size=args.size, **options)
        row["seconds"] = time.perf_counter() - t0
        image.save(out)
        out.with_suffix(".json").write_text(json.dumps({"seconds": row["seconds"],
                                                        "options": options}) + "\n")
    ours = load_pil(out)
    images = [ours]
    anchor = reference_output(args, content_name, style_name)
    if anchor is not None:
        # at its own size, as ours is: resampling an output blurs it, and LPIPS rewards blur
        # (the reference's cat + Great Wave, 512 x 340, resized to our 512 x 341: content
        # 0.675 -> 0.655, style 0.300 -> 0.311)
        reference = load_pil(anchor)
        images.append(reference if args.reference_size == args.size
                      else resize(reference, ours.size))
    report = run_evaluate(load_pil(content), load_pil(style), images)
    row["ours"] = {k: report["images"][0][k] for k in ("content", "style", "colour", "chroma")}
    row["style_chroma"] = report["images"][0]["style_chroma"]
    if len(images) > 1:
        row["reference"] = {k: report["images"][1][k] for k in ("content", "style", "colour",
                                                                "chroma")}
    return row


def _measures(values: dict) -> str:
    """content / style / colour, short enough to caption a square tile."""
    return f"{values['content']:.3f} / {values['style']:.3f} / {values['colour']:.2f}"


def save_grid(rows: list[dict], args: argparse.Namespace, path: Path, height: int = 180) -> None:
    """One row per pair: content, style, the reference's output, ours, each output captioned
    with its content / style / colour measures."""
    strips = []
    for row in rows:
        content_name, style_name = row["pair"].split(":")
        images = [find(args.images, f"content_{content_name}"),
                  find(args.images, f"style_{style_name}")]
        labels = ["content", "style"]
        if "reference" in row:
            images.append(find(args.anchors, f"{content_name}_{style_name}_{args.reference_size}"))
            labels.append(f"reference {_measures(row['reference'])}")
        images.append(Path(row["output"]))
        labels.append(f"ours {_measures(row['ours'])}")
        strips.append(labelled_row([to_array(load_pil(p)) for p in images], labels, height))
    width = max(s.shape[1] for s in strips)
    canvas = np.ones((sum(s.shape[0] + 6 for s in strips), width, 3), np.float32)
    y = 0
    for strip in strips:
        canvas[y:y + strip.shape[0], :strip.shape[1]] = strip
        y += strip.shape[0] + 6
    to_pil(canvas).save(path, **({"quality": 85} if path.suffix.lower() in (".jpg", ".jpeg")
                                 else {}))


def print_row(row: dict) -> None:
    ours, ref = row["ours"], row.get("reference")
    cells = " ".join(f"{k} {ours[k]:.4g}" + (f" / {ref[k]:.4g}" if ref else "")
                     for k in ("content", "style", "colour", "chroma"))
    wins = ""
    if ref:
        better = [k for k in ("content", "style", "colour") if ours[k] <= ref[k]]
        wins = f"  [at least as good on {len(better)}/3: {','.join(better) or '-'}]"
    print(f"{row['pair']:40s} {cells} (style chroma {row['style_chroma']:.1f}) "
          f"{row['seconds']:.0f} s{wins}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--images", type=Path, required=True, help="folder of content_*/style_*")
    parser.add_argument("--anchors", type=Path, help="folder of the reference's outputs")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="content:style,...")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reference-size", type=int, default=512,
                        help="the size in the reference's file names (resized to ours)")
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--label", default="default")
    parser.add_argument("--skip-existing", action="store_true",
                        help="measure outputs already made instead of making them again")
    parser.add_argument("--grid", type=Path, help="also save the side-by-side picture here")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("options", nargs="*", help="stylize options as key=value")
    args = parser.parse_args()
    options = dict((k, parse_value(v)) for k, v in (o.split("=", 1) for o in args.options))
    stylizer = Stylizer(device="cpu", threads=args.threads)
    print(f"{args.label}: {options or 'default options'} (ours / reference)")
    rows = []
    for pair in args.pairs.split(","):
        rows.append(run_pair(stylizer, pair, args, options))
        print_row(rows[-1])
    (args.out / args.label / "study.json").write_text(
        json.dumps({"label": args.label, "options": options, "size": args.size, "rows": rows},
                   indent=2) + "\n")
    if args.grid:
        save_grid(rows, args, args.grid)


if __name__ == "__main__":
    main()
