#!/usr/bin/env python3
"""Time one objective evaluation, split into VGG (ORT forward + VJP) and losses, against
torch autograd of the same formulas in the same run.

N=1024 output samples, M=5000 style samples, D=2179, float32, 2 threads each side. The
torch loss gets the same head start as ours: the style mean and covariance computed once
(the public implementations recompute the covariance, a 47 GFLOP product, every step;
`--torch-recompute` times that too). Medians over --repeat runs after 2 warm-ups.

    python tools/bench_objective.py --sizes 64,512 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from ostransfer import losses
from ostransfer import torch_reference as tr
from ostransfer.features import VGGFeatures
from ostransfer.models import fetch_weights
from ostransfer.objective import Objective, style_hypercolumns
from ostransfer.weights import load_vgg16_weights


def median_time(fn, repeat: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_loss_fn(x0, c, s, preset, a, recompute: bool):
    mu_s, cov_s = s.mean(0), torch.cov(s.T, correction=0)
    d = x0.shape[1]

    def run():
        x = x0.clone().requires_grad_(True)
        if recompute:
            loss, _ = tr.total_loss(x, c, s, preset, a)
        else:
            mu = x.mean(0)
            xs = x - mu
            cov = xs.T @ xs / x.shape[0]
            moment = (mu - mu_s).abs().sum() / d + (cov - cov_s).abs().sum() / d**2
            terms = {"content": tr.content_loss(x, c, preset), "moment": moment,
                     "remd": tr.remd_loss(x, s), "palette": tr.palette_loss(x, s, preset)}
            loss = tr.combine(terms, preset, a)
        (g,) = torch.autograd.grad(loss, x)
        return g

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--torch-recompute", action="store_true")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    engine = VGGFeatures(threads=threads)
    vgg = tr.TorchVGG16(load_vgg16_weights(fetch_weights()), dtype=torch.float32)
    rng = np.random.default_rng(0)
    a = 1024.0 if args.preset == "paper" else 2.0
    print(f"{'size':>5} {'ours VGG':>9} {'ours loss':>9} {'ours total':>10} "
          f"{'torch VGG':>9} {'torch loss':>10} {'torch total':>11} {'loss ratio':>10} {'total ratio':>11}")
    for size in [int(s) for s in args.sizes.split(",")]:
        height, width = size * 2 // 3, size
        content = rng.random((height, width, 3), dtype=np.float32)
        style = rng.random((height, width, 3), dtype=np.float32)
        image = rng.random((height, width, 3), dtype=np.float32)
        S = style_hypercolumns(engine, style, args.preset, 5000, rng).copy()
        target = losses.style_target(S)
        objective = Objective(engine, content, target, args.preset, a, 1024)
        objective.resample(rng)
        X = objective.hypercolumns(image).copy()
        grads = objective.grads

        def vgg_ours():
            engine.forward(image)
            engine.backward(grads)

        ours_total = median_time(lambda: objective(image), args.repeat)
        ours_vgg = median_time(vgg_ours, args.repeat)
        ours_loss = median_time(lambda: losses.total_loss(X, objective.contents[0], target,
                                                          args.preset, a), args.repeat)
        ys, xs = objective.columns.ys, objective.columns.xs
        C = torch.from_numpy(tr.image_hypercolumns(vgg, content, ys, xs, args.preset).numpy())
        St = torch.from_numpy(S)
        loss_fn = torch_loss_fn(torch.from_numpy(X), C, St, args.preset, a, args.torch_recompute)
        torch_loss = median_time(loss_fn, args.repeat)
        torch_total = median_time(lambda: tr.objective(vgg, image, C, St, ys, xs, args.preset, a),
                                  args.repeat) if args.torch_recompute else None
        img_t = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
        g_t = {n: torch.from_numpy(g) for n, g in grads.items()}

        def vgg_torch():
            x = img_t.clone().requires_grad_(True)
            maps = vgg(x)
            torch.autograd.grad(sum((maps[n] * g_t[n]).sum() for n in g_t), x)

        torch_vgg = median_time(vgg_torch, args.repeat)
        torch_total = torch_total or torch_vgg + torch_loss
        print(f"{size:>5} {ours_vgg:9.3f} {ours_loss:9.3f} {ours_total:10.3f} {torch_vgg:9.3f} "
              f"{torch_loss:10.3f} {torch_total:11.3f} {ours_loss / torch_loss:10.2f} "
              f"{ours_total / torch_total:11.2f}", flush=True)


if __name__ == "__main__":
    main()
