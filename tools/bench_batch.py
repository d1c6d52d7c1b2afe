#!/usr/bin/env python3
"""Throughput of ``ostransfer batch`` by worker layout: images per hour at each size, for
every way of sharing the cores between worker processes and their threads (on 2 cores:
1 worker x 2 threads and 2 workers x 1 thread), measured in the same run.

Each measurement is one ``ostransfer batch`` command (a fresh process: model loading and
the workers' start-up are counted, as a user sees them) over the same jobs, the shipped
photos x the shipped paintings (4 jobs), into an empty folder. Layouts take turns within
each repeat, so a neighbour's load slows them alike; the table gives the median over
``--repeats``. Run it on a quiet machine.

    python tools/bench_batch.py                        # 256 and 512 px, default budgets
    python tools/bench_batch.py --sizes 256 --repeats 3 --json batch.json
    python tools/bench_batch.py --fraction 0.25        # a quarter of the evaluations (quick)
    python tools/bench_batch.py --layouts 2x1          # one layout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ostransfer.method.schedule import scale_sides
from ostransfer.run.options import Options

DATA = Path(__file__).resolve().parent.parent / "ostransfer" / "data"


def layouts(cores: int) -> list[tuple[int, int]]:
    """(workers, threads) pairs with workers x threads = cores."""
    return [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]


def budgets(size: int, fraction: float) -> str:
    """The default evaluations per scale at ``size``, scaled by ``fraction`` (at least 1)."""
    default = Options(size=size).budgets(len(scale_sides(size)))
    return ",".join(str(max(1, round(b * fraction))) for b in default)


def run_once(size: int, workers: int, threads: int, evaluations: str) -> tuple[float, int]:
    """(wall seconds, images done) of one batch command."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "ostransfer", "batch",
                   "--contents", str(DATA / "content_*.jpg"),
                   "--styles", str(DATA / "style_*.jpg"), "-o", out, "--size", str(size),
                   "--evaluations", evaluations, "--workers", str(workers),
                   "--threads", str(threads), "--json", "-q"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"batch failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        return seconds, json.loads(done.stdout)["done"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--sizes", default="256,512", help="comma list of long sides, px")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of the default evaluations per scale (1: the default run)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--layouts", help="only these, e.g. 2x1,1x2 (default: every layout)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        evaluations = budgets(size, args.fraction)
        seconds: dict[tuple[int, int], list[float]] = {}
        for repeat in range(args.repeats):
            order = layouts(args.cores) if not args.layouts else \
                [tuple(int(n) for n in item.split("x")) for item in args.layouts.split(",")]
            for workers, threads in (order if repeat % 2 == 0 else order[::-1]):
                wall, images = run_once(size, workers, threads, evaluations)
                seconds.setdefault((workers, threads), []).append(wall / images)
                print(f"{size} px, {workers} x {threads}: {images} images in {wall:.0f} s",
                      flush=True)
        best = min(statistics.median(v) for v in seconds.values())
        for (workers, threads), values in seconds.items():
            per = statistics.median(values)
            rows.append({"size": size, "workers": workers, "threads": threads,
                         "evaluations": evaluations, "seconds_per_image": round(per, 1),
                         "images_per_hour": round(3600 / per, 1),
                         "relative": round(best / per, 3)})
    print(f"\n{'size':>5} {'layout':>8} {'s/image':>8} {'images/h':>9} {'vs best':>8}")
    for r in rows:
        print(f"{r['size']:>5} {r['workers']:>3} x {r['threads']:<3} {r['seconds_per_image']:>8}"
              f" {r['images_per_hour']:>9} {r['relative']:>8}")
    if args.json:
        args.json.write_text(json.dumps({"fraction": args.fraction, "cores": args.cores,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
