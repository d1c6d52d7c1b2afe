#!/usr/bin/env python3
"""Benchmark the VGG16 feature engine (ONNX Runtime) against torch on the CPU.

For each image size (square, default 256 and 512 px) it times, in the same run:

- ``ort fwd``:       ``VGGFeatures.forward`` (the package's engine, as configured there);
- ``ort fwd+VJP``:   ``forward`` then ``backward`` with dense random upstream gradients for
                     the 11 feature layers (preallocated): one optimisation step's VGG work;
- ``torch fwd``:     ``TorchVGG16`` forward under ``no_grad``;
- ``torch fwd+VJP``: forward with grad on the input, then ``torch.autograd.grad`` w.r.t. the
                     input only (weights frozen), with the same upstream gradients.

Every configuration runs in its own subprocess (so its peak RSS, VmHWM, is its own): 2
warm-up calls, then the median of ``--runs`` timed calls. While a call runs, the CPU time
that other processes take (``/proc/stat`` busy + steal minus this process) is recorded;
calls with more than ``--max-foreign`` cores of foreign load are discarded and repeated.
The whole suite is repeated ``--repeats`` times, interleaved, and the median of the
per-run medians is reported. Achieved GFLOP/s counts the 13 convolutions only
(2*Cin*Cout*9*H*W each; the VJP's input-gradient convs have the same count), against two
measured peaks: a large float32 numpy matmul and a large ONNX Runtime 3x3 conv.

Usage:
    python tools/bench_vgg.py                      # 256 and 512 px, all cores
    python tools/bench_vgg.py --sizes 512 --repeats 3 --json bench.json
    python tools/bench_vgg.py --no-torch           # ONNX Runtime only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

CONFIGS = ("ort-fwd", "ort-vjp", "torch-fwd", "torch-vjp")
LABELS = {"ort-fwd": "ort fwd", "ort-vjp": "ort fwd+VJP", "torch-fwd": "torch fwd",
          "torch-vjp": "torch fwd+VJP", "peak-matmul": "numpy matmul", "peak-conv": "ort conv"}
MATMUL_N = 4096  # peak probe: (n x n) @ (n x n) float32
CONV_PROBE = (256, 256, 128, 128)  # peak probe: Cin, Cout, H, W of one 3x3 pad-1 conv
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# FLOPs, host, load


def conv_flops(height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of VGG16's 13 convs, relu1_1 .. relu5_3, at (height, width).

    The VJP's input-gradient convs (Cout -> Cin, flipped kernels) have the same count."""
    from ostransfer.network import LAYERS

    total, cin = 0, 3
    for layer in LAYERS:
        total += 2 * cin * layer.channels * 9 * (height >> layer.pools) * (width >> layer.pools)
        cin = layer.channels
    return total


def host_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0))}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                                if f in flags]
                info["hypervisor"] = "hypervisor" in flags
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    return info


def versions(torch_too: bool) -> dict:
    import numpy
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__}
    if torch_too:
        try:
            import torch

            out["torch"] = torch.__version__
        except ImportError:
            out["torch"] = None
    return out


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
        """(wall seconds, foreign cores on average)."""
        wall = time.perf_counter() - self.t0
        foreign = (self._system_busy() - self.busy0) - (self._own() - self.own0)
        return wall, max(foreign, 0) / CLK_TCK / max(wall, 1e-9)


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------
# Workloads (each runs inside its own child process)


def _image(size: int):
    import numpy as np

    return np.random.default_rng(0).random((size, size, 3), dtype=np.float32)


def _upstream_grads(size: int) -> dict:
    import numpy as np

    from ostransfer.features import map_shape
    from ostransfer.network import FEATURE_LAYERS, LAYER_BY_NAME

    rng = np.random.default_rng(1)
    out = {}
    for name in FEATURE_LAYERS:
        layer = LAYER_BY_NAME[name]
        out[name] = rng.standard_normal(map_shape(size, size, layer.channels, layer.pools),
                                        dtype=np.float32)
    return out


def make_ort(kind: str, size: int, threads: int) -> Callable[[], object]:
    """A zero-argument step for ort-fwd / ort-vjp on the package's engine."""
    from ostransfer.features import VGGFeatures

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

    from ostransfer.models import fetch_weights
    from ostransfer.network import FEATURE_LAYERS
    from ostransfer.torch_reference import TorchVGG16
    from ostransfer.weights import load_vgg16_weights

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

    try:  # numpy's BLAS: honour --threads when threadpoolctl is there (else env vars)
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


def time_step(step: Callable[[], object], runs: int, warmup: int, max_foreign: float,
              max_attempts: int) -> dict:
    """Warm up, then time `runs` calls; calls under more than max_foreign cores of other load
    are discarded and repeated (at most max_attempts calls in all, then the quietest kept)."""
    for _ in range(warmup):
        step()
    meter = LoadMeter()
    kept, dropped = [], []
    while len(kept) < runs and len(kept) + len(dropped) < max(max_attempts, runs):
        meter.start()
        step()
        wall, foreign = meter.stop()
        (kept if foreign <= max_foreign else dropped).append((wall, foreign))
    if len(kept) < runs:  # too noisy: fill up with the least disturbed discarded calls
        dropped.sort(key=lambda r: r[1])
        kept += dropped[:runs - len(kept)]
        dropped = dropped[runs - len(kept):]
    times = [t for t, _ in kept]
    return {"times": times, "median_s": statistics.median(times),
            "foreign": [round(f, 3) for _, f in kept], "discarded": len(dropped)}


def child_main(args: argparse.Namespace) -> None:
    kind, size, threads = args.child, args.size, args.threads
    t0 = time.perf_counter()
    flops = None
    if kind.startswith("ort-"):
        step = make_ort(kind, size, threads)
    elif kind.startswith("torch-"):
        step = make_torch(kind, size, threads)
    elif kind == "peak-matmul":
        step, flops = make_peak_matmul(threads)
    elif kind == "peak-conv":
        step, flops = make_peak_conv(threads)
    else:
        raise SystemExit(f"unknown child kind {kind}")
    setup = time.perf_counter() - t0
    result = time_step(step, args.runs, args.warmup, args.max_foreign,
                       args.max_attempts or 3 * args.runs)
    result.update(kind=kind, size=size, threads=threads, setup_s=round(setup, 3),
                  peak_rss=peak_rss())
    if flops is None:
        flops = conv_flops(size, size) * (2 if kind.endswith("vjp") else 1)
    result["flops"] = flops
    result["gflops"] = flops / result["median_s"] / 1e9
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------
# Parent: run the children, summarise


def wait_for_quiet(max_foreign: float, timeout: float) -> float:
    """Sample the machine's load (0.5 s windows) until it is at most max_foreign cores or
    timeout seconds have passed; return the seconds waited."""
    meter, t0 = LoadMeter(), time.perf_counter()
    while True:
        meter.start()
        time.sleep(0.5)
        _, load = meter.stop()
        waited = time.perf_counter() - t0
        if load <= max_foreign or waited >= timeout:
            return waited


def run_child(kind: str, size: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)  # BLAS pools of the peak probe and torch's OpenMP
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size),
           "--threads", str(args.threads), "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--max-foreign", str(args.max_foreign), "--max-attempts", str(args.max_attempts)]
    if args.quiet_wait > 0:
        wait_for_quiet(args.max_foreign, args.quiet_wait)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{kind} at {size} px failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(results: list[dict]) -> dict:
    """Several child results of one configuration -> one row."""
    medians = [r["median_s"] for r in results]
    median = statistics.median(medians)
    foreign = [f for r in results for f in r["foreign"]]
    return {
        "kind": results[0]["kind"], "size": results[0]["size"], "median_s": median,
        "min_s": min(t for r in results for t in r["times"]),
        "spread": (max(medians) - min(medians)) / median if len(medians) > 1 else 0.0,
        "peak_rss": statistics.median(r["peak_rss"] for r in results),
        "peak_rss_max": max(r["peak_rss"] for r in results),
        "gflops": results[0]["flops"] / median / 1e9, "flops": results[0]["flops"],
        "foreign_mean": statistics.fmean(foreign) if foreign else 0.0,
        "discarded": sum(r["discarded"] for r in results),
        "runs": [r["median_s"] for r in results],
    }


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
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
    parser.add_argument("--runs", type=int, default=5, help="timed calls per child (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="children per configuration, interleaved (default 2)")
    parser.add_argument("--max-foreign", type=float, default=0.25,
                        help="discard and repeat a call when other processes used more than "
                             "this many cores meanwhile (default 0.25)")
    parser.add_argument("--max-attempts", type=int, default=0,
                        help="calls per child at most (default 3 * runs)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each child, wait up to this many seconds for the other "
                             "load to drop under --max-foreign (default 60; 0: don't wait)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return

    configs = [c for c in args.configs if not (args.no_torch and c.startswith("torch"))]
    if any(c.startswith("torch") for c in configs):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch is not installed: skipping the torch reference", file=sys.stderr)
            configs = [c for c in configs if not c.startswith("torch")]
    host = host_info()
    info = {"host": host, "versions": versions(any(c.startswith("torch") for c in configs)),
            "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
            "repeats": args.repeats, "max_foreign": args.max_foreign,
            "loadavg_start": loadavg()}
    print(f"host: {host['cpu']}, {host['cores']} cores ({host['usable_cores']} usable), "
          f"{host.get('mem_gb', '?')} GB, SIMD {'/'.join(host.get('simd', [])) or '?'}"
          f"{', VM' if host.get('hypervisor') else ''}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"threads {args.threads}; {args.warmup} warm-up + median of {args.runs} calls per "
          f"child; {args.repeats} children per configuration; load average {info['loadavg_start']}",
          flush=True)

    jobs = [("peak-matmul", 0), ("peak-conv", 0)] if not args.no_peak else []
    jobs += [(c, s) for s in args.sizes for c in configs]
    raw: dict[tuple[str, int], list[dict]] = {job: [] for job in jobs}
    for rep in range(args.repeats):
        for kind, size in (jobs if rep % 2 == 0 else jobs[::-1]):
            result = run_child(kind, size, args)
            raw[(kind, size)].append(result)
            print(f"  [{rep + 1}/{args.repeats}] {LABELS[kind]:>13} {size or '':>4}: "
                  f"{result['median_s']:.3f} s, peak RSS {result['peak_rss'] / 1e9:.2f} GB, "
                  f"foreign load {statistics.fmean(result['foreign']):.2f} cores"
                  f"{', %d noisy calls redone' % result['discarded'] if result['discarded'] else ''}",
                  file=sys.stderr, flush=True)
    rows = {job: summarise(res) for job, res in raw.items()}
    info["loadavg_end"] = loadavg()

    peaks = {k: rows[(k, 0)] for k in ("peak-matmul", "peak-conv") if (k, 0) in rows}
    if peaks:
        print("\nmeasured peak (float32):")
        cin, cout, h, w = CONV_PROBE
        desc = {"peak-matmul": f"{MATMUL_N}x{MATMUL_N} @ {MATMUL_N}x{MATMUL_N}",
                "peak-conv": f"3x3 conv {cin}->{cout} ch at {h}x{w}"}
        print(fmt_table(["probe", "what", "median s", "GFLOP/s"],
                        [[LABELS[k], desc[k], f"{r['median_s']:.3f}", f"{r['gflops']:.1f}"]
                         for k, r in peaks.items()]))

    headers = ["size", "config", "median s", "min s", "spread", "peak RSS GB", "GFLOP/s"]
    headers += [f"% {LABELS[k]}" for k in peaks] + ["foreign", "redone"]
    table = []
    for kind, size in jobs:
        if not size:
            continue
        r = rows[(kind, size)]
        table.append([f"{size}", LABELS[kind], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                      f"{100 * r['spread']:.0f}%", f"{r['peak_rss'] / 1e9:.2f}",
                      f"{r['gflops']:.1f}"]
                     + [f"{100 * r['gflops'] / p['gflops']:.0f}" for p in peaks.values()]
                     + [f"{r['foreign_mean']:.2f}", str(r["discarded"])])
    print(f"\nVGG16 relu1_1..relu5_3 ({conv_flops(1, 1) / 1e6:.3f} MFLOP of conv per pixel "
          "forward; fwd+VJP counts twice that)")
    print(fmt_table(headers, table))

    ratios = []
    for size in args.sizes:
        for mode in ("fwd", "vjp"):
            o, t = rows.get((f"ort-{mode}", size)), rows.get((f"torch-{mode}", size))
            if o and t:
                ratios.append([str(size), "fwd" if mode == "fwd" else "fwd+VJP",
                               f"{o['median_s'] / t['median_s']:.2f}",
                               f"{o['peak_rss'] / t['peak_rss']:.2f}"])
    if ratios:
        print("\nORT / torch")
        print(fmt_table(["size", "step", "time ratio", "peak RSS ratio"], ratios))
    print(f"\nload average at the end: {info['loadavg_end']} ('foreign': mean cores used by "
          "other processes during the kept calls; 'spread': range of the per-child medians)")

    if args.json:
        info["results"] = [{**r, "label": LABELS[r["kind"]]} for r in rows.values()]
        info["raw"] = [res for results in raw.values() for res in results]
        args.json.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
