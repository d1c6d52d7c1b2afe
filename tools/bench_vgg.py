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

from ostransfer.nets.vgg16 import conv_flops  # noqa: E402
from ostransfer.research.host import host_info, peak_rss  # noqa: E402

CONFIGS = ("ort-fwd", "ort-vjp", "torch-fwd", "torch-vjp")
PROBES = ("peak-matmul", "peak-conv")
LABELS = {"ort-fwd": "ort fwd", "ort-vjp": "ort fwd+VJP", "torch-fwd": "torch fwd",
          "torch-vjp": "torch fwd+VJP", "peak-matmul": "numpy matmul", "peak-conv": "ort conv"}
MATMUL_N = 4096  # peak probe: (n x n) @ (n x n) float32
CONV_PROBE = (256, 256, 128, 128)  # peak probe: Cin, Cout, H, W of one 3x3 pad-1 conv
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# FLOPs, host, load, memory


def step_flops(kind: str, size: int) -> int:
    return conv_flops(size, size) * (2 if kind.endswith("vjp") else 1)


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
# Workloads (each built inside its own worker process)


def _image(size: int):
    import numpy as np

    return np.random.default_rng(0).random((size, size, 3), dtype=np.float32)


def _upstream_grads(size: int) -> dict:
    import numpy as np

    from ostransfer.nets.vgg16 import FEATURE_LAYERS, LAYER_BY_NAME, map_shape

    rng = np.random.default_rng(1)
    out = {}
    for name in FEATURE_LAYERS:
        layer = LAYER_BY_NAME[name]
        out[name] = rng.standard_normal(map_shape(size, size, layer.channels, layer.pools),
                                        dtype=np.float32)
    return out


def make_ort(kind: str, size: int, threads: int) -> Callable[[], object]:
    """A zero-argument step for ort-fwd / ort-vjp on the package's engine."""
    from ostransfer.nets.engine import VGGFeatures

    engine = VGGFeatures("cpu", threads=threads)
    image = _image(size)
    if kind == "ort-fwd":
        return lambda: engine.forward(image)
    grads = _upstream_grads(size)

    def step():
        engine.forward(image)
        return engine.backward(grads)

    return step


def make_torch(kind: str, size: int, threads: int) -> Callable[[], object]:
    import torch

    from ostransfer.nets.provision import fetch_weights
    from ostransfer.nets.vgg16 import FEATURE_LAYERS
    from ostransfer.nets.weights import load_vgg16_weights
    from ostransfer.research.torch_reference import TorchVGG16

    torch.set_num_threads(threads)
    vgg = TorchVGG16(load_vgg16_weights(fetch_weights()), dtype=torch.float32)
    image = torch.from_numpy(_image(size)).permute(2, 0, 1).unsqueeze(0).contiguous()
    if kind == "torch-fwd":
        def step():
            with torch.no_grad():
                return vgg(image)

        return step
    grads = [torch.from_numpy(g) for g in _upstream_grads(size).values()]

    def step():
        x = image.detach().requires_grad_(True)
        maps = vgg(x)
        (grad,) = torch.autograd.grad([maps[n] for n in FEATURE_LAYERS], [x], grads)
        return grad

    return step


def make_peak_matmul(threads: int) -> tuple[Callable[[], object], int]:
    import numpy as np

    try:  # numpy's BLAS pool (the environment variables set by the parent work too)
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    rng = np.random.default_rng(2)
    a = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    out = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=out)), 2 * MATMUL_N ** 3


def make_peak_conv(threads: int) -> tuple[Callable[[], object], int]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cin, cout, h, w = CONV_PROBE
    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(
        (rng.standard_normal((cout, cin, 3, 3)) * 0.02).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "conv_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, h, w])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = rng.random((1, cin, h, w), dtype=np.float32)
    y = np.empty((1, cout, h, w), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
    binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    def step(keep=(x, y)):  # the binding points into x and y: keep them alive
        session.run_with_iobinding(binding)

    return step, 2 * cin * cout * 9 * h * w


def build(kind: str, size: int, threads: int) -> tuple[Callable[[], object], int]:
    """(step, FLOPs per step) of a configuration or probe."""
    if kind.startswith("ort-"):
        return make_ort(kind, size, threads), step_flops(kind, size)
    if kind.startswith("torch-"):
        return make_torch(kind, size, threads), step_flops(kind, size)
    if kind == "peak-matmul":
        return make_peak_matmul(threads)
    if kind == "peak-conv":
        return make_peak_conv(threads)
    raise ValueError(f"unknown configuration {kind!r}")


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
    step, flops = build(args.worker, args.size, args.threads)
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


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> None:
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
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    configs = [c for c in args.configs if not (args.no_torch and c.startswith("torch"))]
    if any(c.startswith("torch") for c in configs):
        try:
            import torch  # noqa: F401
        except ImportError:
            log("torch is not installed: skipping the torch reference")
            configs = [c for c in configs if not c.startswith("torch")]
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
    info["loadavg_end"] = loadavg()

    rows = {}
    for (kind, size), parts in raw.items():
        times = [t for p in parts for t in p["times"]]
        if not times:
            continue
        median = statistics.median(times)
        rows[(kind, size)] = {
            "kind": kind, "size": size, "label": LABELS[kind], "median_s": median,
            "min_s": min(times), "max_s": max(times), "calls": len(times),
            "peak_rss": max(p["peak_rss"] for p in parts),
            "gflops": parts[0]["flops"] / median / 1e9, "flops": parts[0]["flops"],
            "foreign_mean": statistics.fmean(f for p in parts for f in p["foreign"]),
            "discarded": sum(p["discarded"] for p in parts),
            "setup_s": statistics.median(p["setup_s"] for p in parts)}

    peaks = {k: rows[(k, 0)] for k in PROBES if (k, 0) in rows}
    if peaks:
        cin, cout, h, w = CONV_PROBE
        desc = {"peak-matmul": f"{MATMUL_N}x{MATMUL_N} @ {MATMUL_N}x{MATMUL_N}",
                "peak-conv": f"3x3 conv {cin}->{cout} ch at {h}x{w}"}
        print("\nmeasured peak (float32)")
        print(fmt_table(["probe", "what", "median s", "GFLOP/s"],
                        [[LABELS[k], desc[k], f"{r['median_s']:.3f}", f"{r['gflops']:.1f}"]
                         for k, r in peaks.items()]))

    headers = ["size", "config", "median s", "min s", "max s", "peak RSS GB", "GFLOP/s"]
    headers += [f"% {LABELS[k]}" for k in peaks] + ["other load", "redone"]
    table = []
    for kind, size in [job for kinds in sets for job in kinds if job[1]]:
        r = rows.get((kind, size))
        if r is None:
            continue
        table.append([str(size), LABELS[kind], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                      f"{r['max_s']:.3f}", f"{r['peak_rss'] / 1e9:.2f}", f"{r['gflops']:.1f}"]
                     + [f"{100 * r['gflops'] / p['gflops']:.0f}" for p in peaks.values()]
                     + [f"{r['foreign_mean']:.2f}", str(r["discarded"])])
    print(f"\nVGG16 relu1_1..relu5_3: {conv_flops(512, 512) / 1e9:.1f} GFLOP of convolution "
          "per forward at 512 px (fwd+VJP: twice that)")
    print(fmt_table(headers, table))

    ratios = []
    for size in args.sizes:
        for mode, name in (("fwd", "fwd"), ("vjp", "fwd+VJP")):
            o, t = f"ort-{mode}@{size}", f"torch-{mode}@{size}"
            per_round = [r[o] / r[t] for r in rounds.get(size, []) if o in r and t in r]
            if per_round:
                ro, rt = rows[(f"ort-{mode}", size)], rows[(f"torch-{mode}", size)]
                ratios.append([str(size), name, f"{statistics.median(per_round):.2f}",
                               f"{min(per_round):.2f}-{max(per_round):.2f}",
                               f"{ro['peak_rss'] / rt['peak_rss']:.2f}"])
    if ratios:
        print("\nORT / torch (time: median and range of the per-round ratios)")
        print(fmt_table(["size", "step", "time ratio", "range", "peak RSS ratio"], ratios))
    print(f"\nload average at the end: {info['loadavg_end']}. 'other load': mean cores used by "
          "other processes during the kept calls; 'redone': calls discarded for other load.")

    if args.json:
        info["results"] = list(rows.values())
        info["rounds"] = {str(k): v for k, v in rounds.items()}
        info["workers"] = [{"kind": k, "size": s, **p} for (k, s), parts in raw.items()
                           for p in parts]
        args.json.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
