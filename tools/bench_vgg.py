#!/usr/bin/env python3
"""Benchmark the VGG16 feature engine (ONNX Runtime) against torch on the CPU.

For each image size (square; default 256 and 512 px) it times, in the same run:

- ``ort fwd``:       ``VGGFeatures.forward``, the package's engine as configured there;
- ``ort fwd+VJP``:   ``forward`` then ``backward`` with dense random upstream gradients for
                     the 11 feature layers (preallocated): one optimisation step's VGG work;
- ``torch fwd``:     ``TorchVGG16`` (``ostransfer.research.torch_reference``) under ``no_grad``;
- ``torch fwd+VJP``: a forward with grad on the input, then ``torch.autograd.grad`` w.r.t.
                     the input only (weights frozen), with the same upstream gradients.

Every configuration lives in its own worker subprocess, so its peak RSS (VmHWM) is its
own. The workers of one size start one after the other (set-up and 2 warm-up calls
each), then take turns: one timed call of each worker per round, ``--runs`` rounds. On a
shared machine this matters: other jobs, and neighbours on the host that no load figure
shows, slow the configurations alike instead of whichever happened to run at the time.
During each call the worker records the CPU time other processes took (``/proc/stat``
busy + steal, minus its own); a call with more than ``--max-foreign`` cores of other load
is discarded and run again. ``--repeats`` fresh sets of workers; the table gives the
median over all kept calls, and the ORT/torch ratio is the median of the per-round ratios.

Achieved GFLOP/s counts the 13 convolutions only (2*Cin*Cout*9*H*W each; the VJP's
input-gradient convolutions have the same count, so fwd+VJP counts twice the forward),
against two peaks measured in the same run: a large float32 numpy matmul and a large
ONNX Runtime 3x3 convolution.

Usage:
    python tools/bench_vgg.py                      # 256 and 512 px, all cores
    python tools/bench_vgg.py --sizes 512 --runs 7 --repeats 2 --json bench.json
    python tools/bench_vgg.py --no-torch           # ONNX Runtime only
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
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import bench_vgg_report  # noqa: E402 - beside this script
import bench_vgg_workloads  # noqa: E402 - beside this script
from ostransfer.research.host import host_info, peak_rss  # noqa: E402

CONFIGS = ("ort-fwd", "ort-vjp", "torch-fwd", "torch-vjp")
PROBES = ("peak-matmul", "peak-conv")
LABELS = {"ort-fwd": "ort fwd", "ort-vjp": "ort fwd+VJP", "torch-fwd": "torch fwd",
          "torch-vjp": "torch fwd+VJP", "peak-matmul": "numpy matmul", "peak-conv": "ort conv"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# Host load and memory


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class LoadMeter:
    """CPU time (in cores) that everything but this process used between start() and stop()."""

    @staticmethod
    def _system_busy() -> int:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
        return sum(fields[:8]) - fields[3] - fields[4]

    @staticmethod
    def _own() -> int:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._system_busy(), self._own()

    def stop(self) -> tuple[float, float]:
        """(wall seconds, other processes' load in cores on average)."""
        wall = time.perf_counter() - self.t0
        foreign = (self._system_busy() - self.busy0) - (self._own() - self.own0)
        return wall, max(foreign, 0) / CLK_TCK / max(wall, 1e-9)


def wait_for_quiet(max_foreign: float, timeout: float) -> float:
    """Sample the machine's load (0.5 s windows) until other processes use at most
    max_foreign cores or timeout seconds have passed; return the seconds waited."""
    meter, t0 = LoadMeter(), time.perf_counter()
    while True:
        meter.start()
        time.sleep(0.5)
        _, load = meter.stop()
        waited = time.perf_counter() - t0
        if load <= max_foreign or waited >= timeout:
            return waited


# ---------------------------------------------------------------------------------------
# The worker side (its workloads are in bench_vgg_workloads)


def serve(step: Callable[[], object], warmup: int, info: dict) -> None:
    """Worker side of the protocol: warm up, say READY, then time one call per "run" line
    (answering TIME wall foreign) until "quit" (answering DONE with the peak RSS)."""
    for _ in range(warmup):
        step()
    print("READY " + json.dumps(info), flush=True)
    meter = LoadMeter()
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            meter.start()
            step()
            wall, foreign = meter.stop()
            print(f"TIME {wall:.6f} {foreign:.4f}", flush=True)
        elif command == "quit":
            break
    print("DONE " + json.dumps({"peak_rss": peak_rss()}), flush=True)


def worker_main(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    step, flops = bench_vgg_workloads.build(args.worker, args.size, args.threads)
    serve(step, args.warmup, {"setup_s": time.perf_counter() - t0, "flops": flops})


# ---------------------------------------------------------------------------------------
# Parent: start the workers, take turns, summarise


class Worker:
    """A worker subprocess speaking the READY / run / TIME / quit / DONE protocol."""

    def __init__(self, name: str, cmd: list[str], env: dict | None = None):
        self.name = name
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1, env=env)
        self.info = json.loads(self._expect("READY"))
        self.times: list[float] = []
        self.foreign: list[float] = []
        self.discarded = 0

    def _expect(self, tag: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1:]
        self.proc.wait()
        self.stderr.seek(0)
        tail = "\n".join(self.stderr.read().strip().splitlines()[-15:])
        raise RuntimeError(f"worker {self.name} failed (exit {self.proc.returncode}):\n{tail}")

    def call(self) -> tuple[float, float]:
        self.proc.stdin.write("run\n")
        wall, foreign = self._expect("TIME").split()
        return float(wall), float(foreign)

    def timed_call(self, max_foreign: float, attempts: int) -> float:
        """One kept call: repeat while other load exceeds max_foreign (at most `attempts`
        calls; then the least disturbed one counts)."""
        tries = []
        for _ in range(max(attempts, 1)):
            wall, foreign = self.call()
            tries.append((foreign, wall))
            if foreign <= max_foreign:
                break
        foreign, wall = min(tries)
        self.discarded += len(tries) - 1
        self.times.append(wall)
        self.foreign.append(foreign)
        return wall

    def close(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        done = json.loads(self._expect("DONE"))
        self.proc.wait()
        self.stderr.close()
        return done


def worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)  # BLAS pools of the matmul probe, torch's OpenMP pool
    return env


def interleave(workers: list[Worker], runs: int, max_foreign: float, attempts: int,
               quiet_wait: float, pause: float = 0.05) -> list[dict[str, float]]:
    """`runs` rounds; in each, one kept call per worker (the order rotates by round).
    Returns the time of every worker per round."""
    rounds = []
    for r in range(runs):
        if quiet_wait > 0:
            wait_for_quiet(max_foreign, quiet_wait)
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        row = {}
        for w in order:
            time.sleep(pause)  # let the previous worker's pool threads settle
            row[w.name] = w.timed_call(max_foreign, attempts)
        rounds.append(row)
    return rounds


def run_set(kinds: list[tuple[str, int]], args: argparse.Namespace, log) -> tuple[list, dict]:
    """Start one worker per (kind, size), one after the other, interleave their calls,
    close them. Returns (per-round times, {(kind, size): worker summary})."""
    workers = []
    try:
        for kind, size in kinds:
            if args.quiet_wait > 0:
                wait_for_quiet(args.max_foreign, args.quiet_wait)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                   "--size", str(size), "--threads", str(args.threads),
                   "--warmup", str(args.warmup)]
            workers.append(Worker(f"{kind}@{size}", cmd, worker_env(args.threads)))
        rounds = interleave(workers, args.runs, args.max_foreign, args.max_attempts,
                            args.quiet_wait)
    finally:
        summaries = {}
        for w, (kind, size) in zip(workers, kinds):
            try:
                done = w.close()
            except Exception:  # noqa: BLE001 - a failed worker: report what there is
                w.proc.kill()
                continue
            summaries[(kind, size)] = {"times": w.times, "foreign": w.foreign,
                                       "discarded": w.discarded, "peak_rss": done["peak_rss"],
                                       "setup_s": w.info["setup_s"], "flops": w.info["flops"]}
            if w.times:
                log(f"  {LABELS[kind]:>13} {size or '':>4}: median {statistics.median(w.times):.3f} s, "
                    f"peak RSS {done['peak_rss'] / 1e9:.2f} GB, other load "
                    f"{statistics.fmean(w.foreign):.2f} cores, {w.discarded} calls redone")
    return rounds, summaries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512],
                        help="square image sizes in px (default: 256 512)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak GFLOP/s probes")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for ORT and torch (default: usable cores)")
    parser.add_argument("--runs", type=int, default=5,
                        help="timed rounds per set of workers (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh sets of workers per size (default 1)")
    parser.add_argument("--max-foreign", type=float, default=0.25,
                        help="redo a call when other processes used more than this many "
                             "cores meanwhile (default 0.25)")
    parser.add_argument("--max-attempts", type=int, default=4,
                        help="calls per kept call at most (default 4)")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each round, wait up to this many seconds for other load "
                             "to drop under --max-foreign (default 30; 0: don't wait)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chosen_configs(args: argparse.Namespace) -> list[str]:
    """The configurations to run: without the torch ones when torch is absent or refused."""
    configs = [c for c in args.configs if not (args.no_torch and c.startswith("torch"))]
    if any(c.startswith("torch") for c in configs):
        try:
            import torch  # noqa: F401
        except ImportError:
            log("torch is not installed: skipping the torch reference")
            configs = [c for c in configs if not c.startswith("torch")]
    return configs


def measure(sets: list[list[tuple[str, int]]], args: argparse.Namespace
            ) -> tuple[dict[int, list], dict[tuple[str, int], list[dict]]]:
    """Every set of workers `args.repeats` times: (per-round times by size, summaries)."""
    rounds: dict[int, list] = {}
    raw: dict[tuple[str, int], list[dict]] = {}
    for rep in range(args.repeats):
        for kinds in sets:
            log(f"[{rep + 1}/{args.repeats}] " + ", ".join(
                f"{LABELS[k]}{f' {s}' if s else ''}" for k, s in kinds))
            r, summaries = run_set(kinds, args, log)
            rounds.setdefault(kinds[0][1], []).extend(r)
            for key, summary in summaries.items():
                raw.setdefault(key, []).append(summary)
    return rounds, raw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    configs = chosen_configs(args)
    host = host_info("cpu")
    info = {"host": host, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
            "repeats": args.repeats, "max_foreign": args.max_foreign,
            "loadavg_start": loadavg()}
    print(f"host: {host['cpu']}, {host['logical_cores']} cores ({host['usable_cores']} usable), "
          f"{host.get('memory_gb', '?')} GB, SIMD {'/'.join(host.get('simd', [])) or '?'}"
          f"{', virtual machine' if host.get('virtualised') else ''}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in host["versions"].items()))
    print(f"threads {args.threads}; {args.warmup} warm-up calls per worker, {args.runs} "
          f"interleaved rounds x {args.repeats} worker set(s); load average {info['loadavg_start']}",
          flush=True)
    sets = ([[(p, 0) for p in PROBES]] if not args.no_peak else [])
    sets += [[(c, s) for c in configs] for s in args.sizes]
    rounds, raw = measure(sets, args)
    info["loadavg_end"] = loadavg()
    rows = bench_vgg_report.summarise(raw, LABELS)
    bench_vgg_report.print_report(rows, rounds, sets, args.sizes, info, LABELS, PROBES,
                                  bench_vgg_workloads.CONV_PROBE, bench_vgg_workloads.MATMUL_N)
    if args.json:
        info["results"] = list(rows.values())
        info["rounds"] = {str(k): v for k, v in rounds.items()}
        info["workers"] = [{"kind": k, "size": s, **p} for (k, s), parts in raw.items()
                           for p in parts]
        args.json.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
