#!/usr/bin/env python3
"""Time one loss evaluation (value + gradient w.r.t. the hypercolumns) at the objective's size.

The losses alone, without VGG: N output samples, M style samples, D hypercolumn channels
(defaults N=1024, M=5000, D=2179, float32). In one process, round by round (each round times
every item once, so that foreign load on a shared machine hits all items alike):

- ours: ``losses.total_loss`` of each preset, and each term on its own;
- the floor: the five large products of one evaluation (REMD's N x M cosine matrix, the
  content self-similarity and its gradient, the output covariance and its gradient) run as
  bare matmuls, and NumPy's float32 matmul rate (2048^3) measured in the same rounds;
- the REMD product (N x D by D x M) through ONNX Runtime's MatMul, the other path a product
  could take here (same threads), against NumPy's;
- torch (when installed): autograd of the same formulas (``compare.TorchLosses``, style
  statistics and content self-similarity precomputed, like ours), float32, same threads.

Prints medians over the rounds and the same-run ratios.

    python tools/bench_losses.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np

from ostransfer.method import losses
from ostransfer.presets import PRESETS
from ostransfer.research.host import torch_available


def features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Non-negative rows like post-ReLU hypercolumns, RGB columns in [0, 1]."""
    a = np.abs(rng.standard_normal((n, d), dtype=np.float32))
    a[:, :3] = rng.random((n, 3), dtype=np.float32)
    return a


def products(x: np.ndarray, style: losses.StyleTarget) -> Callable[[], None]:
    """The evaluation's five large products as bare matmuls (their shapes and symmetry)."""
    n = x.shape[0]
    xs = x - x.mean(axis=0)
    g_nn = np.ones((n, n), np.float32)
    g_dd = np.sign(style.cov)

    def run() -> None:
        x @ style.unit.T  # REMD cosine matrix, 2NMD
        x @ x.T  # content self-similarity (syrk), N^2 D
        g_nn @ x  # content gradient, 2N^2 D
        xs.T @ xs  # output covariance (syrk), D^2 N
        xs @ g_dd  # covariance gradient, 2ND^2
    return run


def ort_matmul(n: int, d: int, m: int) -> Callable[[np.ndarray, np.ndarray], object]:
    """A one-node ONNX Runtime MatMul session, (n, d) @ (d, m), on all usable cores."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, d]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [d, m])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, m])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"a": a, "b": b})


WEIGHT = {"paper": 4096.0, "strotss": 2.0}


def ours_items(x, c, s, rng) -> dict[str, Callable[[], object]]:
    """Our losses, each term alone, the bare products and the matmul rate, by name."""
    n, d = x.shape
    m = s.shape[0]
    style, content = losses.style_target(s), losses.content_target(c)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    items: dict[str, Callable[[], object]] = {}
    for preset in PRESETS:
        items[f"ours total ({preset})"] = (
            lambda p=preset: losses.total_loss(x, content, style, p, WEIGHT[p]))
    items["  remd"] = lambda: losses.remd_style_loss(x, style)
    items["  moment"] = lambda: losses.moment_loss(x, style)
    items["  content"] = lambda: losses.content_loss(x, content, "paper")
    items["  palette"] = lambda: losses.palette_loss(x, style, "paper")
    items["products alone (floor)"] = products(unit, style)
    style_t = np.ascontiguousarray(style.unit.T)
    items["REMD product, numpy"] = lambda: unit @ style_t
    run_ort = ort_matmul(n, d, m)
    items["REMD product, ORT MatMul"] = lambda: run_ort(unit, style_t)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    items["matmul 2048^3"] = lambda: a @ a
    return items


def torch_items(x, c, s) -> dict[str, Callable[[], object]]:
    """torch autograd of the same formulas, one item per preset."""
    import torch

    from ostransfer.research import torch_reference as tr
    from ostransfer.research.torch_objective import TorchLosses

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    items: dict[str, Callable[[], object]] = {}
    for preset in PRESETS:
        theirs = TorchLosses(s, preset)
        theirs.set_content(torch.from_numpy(c))

        def torch_step(t=theirs, p=preset) -> None:
            xt = torch.tensor(x, requires_grad=True)
            loss = tr.combine(t.terms(xt), p, WEIGHT[p])
            loss.backward()
        items[f"torch total ({preset})"] = torch_step
    return items


def interleaved_medians(items: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each item over `rounds` rounds, items interleaved (round 0 warms up)."""
    times: dict[str, list[float]] = {name: [] for name in items}
    for rnd in range(rounds + 1):
        for name, step in items.items():
            t0 = time.perf_counter()
            step()
            if rnd:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(med: dict[str, float], n: int, m: int, d: int, rounds: int) -> None:
    flops = 2 * n * m * d + 3 * n * n * d + 3 * n * d * d
    rate = 2 * 2048 ** 3 / med["matmul 2048^3"] / 1e9
    print(f"N={n} M={m} D={d} float32, median of {rounds} rounds (items interleaved)")
    for name, t in med.items():
        print(f"  {name:26s} {t * 1e3:8.1f} ms")
    print(f"numpy matmul rate {rate:.0f} GFLOP/s; the products ({flops / 1e9:.1f} GFLOP, "
          f"syrk counted at half) would take {flops / rate / 1e9 * 1e3:.0f} ms at that rate, "
          f"measured {med['products alone (floor)'] * 1e3:.0f} ms")
    remd_flops = 2 * n * m * d / 1e9
    print(f"REMD product: numpy {remd_flops / med['REMD product, numpy']:.0f} GFLOP/s, ONNX "
          f"Runtime MatMul {remd_flops / med['REMD product, ORT MatMul']:.0f} GFLOP/s")
    for preset in PRESETS:
        ours = med[f"ours total ({preset})"]
        line = (f"{preset}: ours / products alone = {ours / med['products alone (floor)']:.2f}")
        if f"torch total ({preset})" in med:
            line += f"; ours / torch autograd = {ours / med[f'torch total ({preset})']:.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", "-n", type=int, default=1024)
    parser.add_argument("--style-samples", "-m", type=int, default=5000)
    parser.add_argument("--dim", "-d", type=int, default=2179)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    n, m, d = args.samples, args.style_samples, args.dim
    rng = np.random.default_rng(0)
    x, c, s = features(rng, n, d), features(rng, n, d), features(rng, m, d)
    items = ours_items(x, c, s, rng)
    if torch_available() and not args.no_torch:
        items.update(torch_items(x, c, s))
    report(interleaved_medians(items, args.rounds), n, m, d, args.rounds)


if __name__ == "__main__":
    main()
