#!/usr/bin/env python3
"""Which optimiser reaches a lower STROTSS objective per function evaluation?

For each content/style pair, at one scale, from the schedule's usual start (style mean +
content detail), run RMSprop on a Laplacian pyramid (the official code's optimiser, a new
sample set every step) and L-BFGS-B with several round lengths K, all for the same number
of function evaluations. Every `--every` evaluations the current image is scored on one
large fixed evaluation sample set (seeded; the same for every run), so all curves share a
yardstick. Its content weight (and that of a run with more samples) is scaled so that it
weighs content as the runs at --samples do (the paper preset's content term scales like
1/N). Prints a table (and writes JSON and a PNG plot with --out).

    python tools/study_optimizers.py --size 64 --evaluations 200 --runs rmsprop,50,50p5,50n2048 --out DIR
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from ostransfer.files import sample_image
from ostransfer.imaging.io import load_pil, resize, scaled_size, to_array
from ostransfer.method import losses
from ostransfer.method.lbfgs import lbfgs
from ostransfer.method.objective import Objective, style_hypercolumns
from ostransfer.method.optimizer import Step
from ostransfer.method.rmsprop import rmsprop
from ostransfer.method.schedule import initial_image
from ostransfer.nets.engine import VGGFeatures
from ostransfer.presets import DEFAULT_CONTENT_WEIGHT, balanced_weight

PAIRS = {
    "chelsea+starry": ("content_chelsea.jpg", "style_starry_night.jpg"),
    "coffee+wave": ("content_coffee.jpg", "style_great_wave.jpg"),
    "chelsea+wave": ("content_chelsea.jpg", "style_great_wave.jpg"),
}


def run_pair(engine, name, content_file, style_file, args) -> dict:
    content_pil, style_pil = load_pil(sample_image(content_file)), load_pil(sample_image(style_file))
    content = to_array(resize(content_pil, scaled_size(content_pil.size, args.size)))
    style = to_array(resize(style_pil, scaled_size(style_pil.size, args.size)))
    weight = DEFAULT_CONTENT_WEIGHT[args.preset]
    rng = np.random.default_rng(0)
    target = losses.style_target(style_hypercolumns(engine, style, args.preset, args.style_samples, rng))
    # the yardstick: a large fixed sample set and a larger style set
    judge_target = losses.style_target(
        style_hypercolumns(engine, style, args.preset, 2 * args.style_samples, np.random.default_rng(99)))
    judge_weight = balanced_weight(args.preset, 2 * args.samples, weight, args.samples)
    judge = Objective(engine, content, judge_target, args.preset, judge_weight,
                      samples=2 * args.samples)
    judge.resample(np.random.default_rng(98))
    start = initial_image(content, style.reshape(-1, 3).mean(axis=0), None, last=False)

    curves = {}
    for run in args.runs:
        kind = "rmsprop" if run == "rmsprop" else "lbfgs"
        k, levels, samples = parse_run("0" if kind == "rmsprop" else run, args.samples)
        label = ("RMSprop (pyramid)" if kind == "rmsprop" else f"L-BFGS-B K={k}"
                 + (f" pyramid {levels}" if levels else "")
                 + (f" N={samples}" if samples != args.samples else ""))
        objective = Objective(engine, content, target, args.preset,
                              balanced_weight(args.preset, samples, weight, args.samples), samples)
        points = []

        def record(step: Step) -> None:
            if step.evaluation % args.every == 0:
                points.append((step.evaluation, judge(step.image)[0]))

        t0 = time.perf_counter()
        if kind == "rmsprop":
            rmsprop(objective, start, args.evaluations, np.random.default_rng(1), lr=2e-3,
                    callback=record)
        else:
            lbfgs(objective, start, args.evaluations, k, np.random.default_rng(1), record,
                  levels=levels)
        curves[label] = points
        print(f"  {name:16s} {label:20s} final {points[-1][1]:.4g}  ({time.perf_counter() - t0:.0f} s)  "
              + " ".join(f"{e}:{v:.4g}" for e, v in points), flush=True)
    return {"start": judge(start)[0], "curves": curves}


def parse_run(run: str, samples: int) -> tuple[int, int, int]:
    """"K[pL][nN]" -> (K, pyramid levels L or 0, samples N or the default)."""
    match = re.fullmatch(r"(\d+)(?:p(\d+))?(?:n(\d+))?", run)
    if not match:
        raise SystemExit(f"bad run {run!r}: expected rmsprop or K[pL][nN], e.g. 50, 50p5, 50n2048")
    k, levels, n = match.groups()
    return int(k), int(levels or 0), int(n or samples)


def evaluations_to_reach(points, level):
    return next((e for e, v in points if v <= level), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--runs", default="rmsprop,25,50,50p5",
                        help="rmsprop, or an L-BFGS-B round length K (evaluations per sample "
                             "set); suffix pL: on a Laplacian pyramid of L levels; suffix nN: N "
                             "samples per set instead of --samples. The first run is the "
                             "reference of the table")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--style-samples", type=int, default=5000)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--out", type=Path, help="folder for study.json and study.png")
    args = parser.parse_args()
    args.runs = args.runs.split(",")
    engine = VGGFeatures()
    results = {}
    for name in args.pairs.split(","):
        results[name] = run_pair(engine, name, *PAIRS[name], args)

    print(f"\nObjective on the fixed evaluation set, {args.size} px, preset {args.preset}; "
          f"evaluations needed to reach RMSprop's value after {args.evaluations} steps:")
    labels = list(next(iter(results.values()))["curves"])
    print(f"{'pair':16s} " + " ".join(f"{label:>20s}" for label in labels))
    for name, res in results.items():
        goal = res["curves"][labels[0]][-1][1]
        cells = []
        for label in labels:
            pts = res["curves"][label]
            reach = evaluations_to_reach(pts, goal)
            cells.append(f"{pts[-1][1]:.4g} @{reach if reach else '>' + str(args.evaluations):>4}")
        print(f"{name:16s} " + " ".join(f"{c:>20s}" for c in cells))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "study.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"},
                                                          "results": results}, indent=1))
        plot(results, args, args.out / "study.png")


def plot(results, args, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for label, pts in res["curves"].items():
            ax.plot(*zip(*pts), label=label)
        ax.set_title(f"{name}, {args.size} px")
        ax.set_xlabel("function evaluations")
        ax.set_ylabel("objective (fixed evaluation set)")
        ax.set_yscale("log")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
