"""Peak memory and time of large runs, whole-image and tiled (issue 16; README table).

For each size and reading (``whole``, or ``max-memory=8G`` style budgets, or ``tile=512``):
- ``run``: a stylisation with one evaluation per scale under /usr/bin/time -v: peak RSS and
  wall seconds of the whole run (model loading, every scale), and the seconds of its last
  scale (the style's samples, the content's, one evaluation);
- ``eval``: a fresh process that builds the final scale's objective and times two
  evaluations after a warm-up (seconds per evaluation), with its peak RSS.

    python tools/bench_memory.py --sizes 512 1024 2048 --readings whole max-memory=4G
    python tools/bench_memory.py --sizes 4096 --readings max-memory=8G --what run

Prints one row per measurement (and --json FILE writes them). Run with nothing else busy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CONTENT = HERE / "ostransfer" / "data" / "content_coffee.jpg"
STYLE = HERE / "ostransfer" / "data" / "style_starry_night.jpg"

EVAL_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
from ostransfer.method import losses
from ostransfer.method.objective import Objective, style_hypercolumns
from ostransfer.nets.engine import VGGFeatures
from ostransfer.run.plan import fit_to_memory, keeps_content_maps
from ostransfer.run.options import Options
size, reading, content_path, style_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def load(path):
    img = Image.open(path).convert("RGB")
    f = size / max(img.size)
    img = img.resize((round(img.width * f), round(img.height * f)), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255
content, style = load(content_path), load(style_path)
opts = Options(size=size)
if reading.startswith("tile="):
    opts = Options(size=size, tile=int(reading[5:]))
elif reading.startswith("max-memory="):
    from ostransfer.run.plan import parse_memory
    opts = fit_to_memory(content.shape[1::-1], style.shape[1::-1], opts,
                         max_memory=parse_memory(reading[11:], "--max-memory "))
engine = VGGFeatures()
rng = np.random.default_rng(0)
target = losses.style_target(style_hypercolumns(engine, style, "strotss", 5000, rng, tile=opts.tile))
whole = opts.tile is None
objective = Objective(engine, content, target, "strotss", 4.0, 1024, tile=opts.tile,
                      keep_content_maps=whole and keeps_content_maps(content.shape[1::-1]))
image = content.copy()
times = []
for k in range(2 if opts.tile else 3):  # tiled: one warm-up (slow at large sizes)
    start = time.perf_counter()
    objective.resample(rng)
    objective(image)
    times.append(time.perf_counter() - start)
print(json.dumps({"tile": opts.tile, "seconds_per_evaluation": float(np.median(times[1:])),
                  "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _time_v(cmd: list[str]) -> tuple[float, float, str]:
    """(peak RSS GiB, wall s, stdout) of a command under /usr/bin/time -v."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    return peak_kb / 2**20, wall, proc.stdout


RUN_SCRIPT = r"""
import json, sys, time
import ostransfer
size, reading, content_path, style_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
extra = {} if reading == "whole" else {reading.split("=")[0].replace("-", "_"):
                                       reading.split("=")[1]}
if "tile" in extra:
    extra["tile"] = int(extra["tile"])
marks = [time.perf_counter()]
def progress(p):
    marks.append(time.perf_counter())
result = ostransfer.Stylizer(device="cpu").stylize(content_path, style_path, size=size,
                                                   evaluations=1, progress=progress, **extra)
print(json.dumps({"last_scale_s": marks[-1] - marks[-2], "size": result.size}))
"""


def run_row(size: int, reading: str) -> dict:
    """A whole run with one evaluation per scale: its peak RSS and wall time, and the time
    of the last scale (its style sampling, content sample set and one evaluation)."""
    peak, wall, stdout = _time_v([sys.executable, "-c", RUN_SCRIPT, str(size), reading,
                                  str(CONTENT), str(STYLE)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"what": "run", "size": size, "reading": reading, "peak_gib": round(peak, 2),
            "wall_s": round(wall, 1), "last_scale_s": round(result["last_scale_s"], 1)}


def eval_row(size: int, reading: str) -> dict:
    peak, wall, stdout = _time_v([sys.executable, "-c", EVAL_SCRIPT, str(size), reading,
                                  str(CONTENT), str(STYLE)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"what": "eval", "size": size, "reading": reading, "tile": result["tile"],
            "peak_gib": round(peak, 2),
            "s_per_eval": round(result["seconds_per_evaluation"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--readings", nargs="+", default=["whole", "max-memory=4G"])
    parser.add_argument("--what", choices=["eval", "run", "both"], default="both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for reading in args.readings:
            for what in (["eval", "run"] if args.what == "both" else [args.what]):
                row = (eval_row if what == "eval" else run_row)(size, reading)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
