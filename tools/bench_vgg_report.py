"""The tables of tools/bench_vgg.py: summaries of the workers' timings, peak probes, ratios."""

from __future__ import annotations

import statistics

from ostransfer.nets.vgg16 import conv_flops


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def summarise(raw: dict[tuple[str, int], list[dict]], labels: dict[str, str]) -> dict:
    """One row per (configuration, size): median, range, memory and GFLOP/s of all calls."""
    rows = {}
    for (kind, size), parts in raw.items():
        times = [t for p in parts for t in p["times"]]
        if not times:
            continue
        median = statistics.median(times)
        rows[(kind, size)] = {
            "kind": kind, "size": size, "label": labels[kind], "median_s": median,
            "min_s": min(times), "max_s": max(times), "calls": len(times),
            "peak_rss": max(p["peak_rss"] for p in parts),
            "gflops": parts[0]["flops"] / median / 1e9, "flops": parts[0]["flops"],
            "foreign_mean": statistics.fmean(f for p in parts for f in p["foreign"]),
            "discarded": sum(p["discarded"] for p in parts),
            "setup_s": statistics.median(p["setup_s"] for p in parts)}
    return rows


def _peak_table(peaks: dict, labels: dict[str, str], conv_probe: tuple, matmul_n: int) -> None:
    cin, cout, h, w = conv_probe
    desc = {"peak-matmul": f"{matmul_n}x{matmul_n} @ {matmul_n}x{matmul_n}",
            "peak-conv": f"3x3 conv {cin}->{cout} ch at {h}x{w}"}
    print("\nmeasured peak (float32)")
    print(fmt_table(["probe", "what", "median s", "GFLOP/s"],
                    [[labels[k], desc[k], f"{r['median_s']:.3f}", f"{r['gflops']:.1f}"]
                     for k, r in peaks.items()]))


def _ratio_rows(rows: dict, rounds: dict, sizes: list[int]) -> list[list[str]]:
    ratios = []
    for size in sizes:
        for mode, name in (("fwd", "fwd"), ("vjp", "fwd+VJP")):
            o, t = f"ort-{mode}@{size}", f"torch-{mode}@{size}"
            per_round = [r[o] / r[t] for r in rounds.get(size, []) if o in r and t in r]
            if per_round:
                ro, rt = rows[(f"ort-{mode}", size)], rows[(f"torch-{mode}", size)]
                ratios.append([str(size), name, f"{statistics.median(per_round):.2f}",
                               f"{min(per_round):.2f}-{max(per_round):.2f}",
                               f"{ro['peak_rss'] / rt['peak_rss']:.2f}"])
    return ratios


def print_report(rows: dict, rounds: dict, sets: list, sizes: list[int], info: dict,
                 labels: dict[str, str], probes: tuple, conv_probe: tuple, matmul_n: int) -> None:
    peaks = {k: rows[(k, 0)] for k in probes if (k, 0) in rows}
    if peaks:
        _peak_table(peaks, labels, conv_probe, matmul_n)
    headers = ["size", "config", "median s", "min s", "max s", "peak RSS GB", "GFLOP/s"]
    headers += [f"% {labels[k]}" for k in peaks] + ["other load", "redone"]
    table = []
    for kind, size in [job for kinds in sets for job in kinds if job[1]]:
        r = rows.get((kind, size))
        if r is None:
            continue
        table.append([str(size), labels[kind], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                      f"{r['max_s']:.3f}", f"{r['peak_rss'] / 1e9:.2f}", f"{r['gflops']:.1f}"]
                     + [f"{100 * r['gflops'] / p['gflops']:.0f}" for p in peaks.values()]
                     + [f"{r['foreign_mean']:.2f}", str(r["discarded"])])
    print(f"\nVGG16 relu1_1..relu5_3: {conv_flops(512, 512) / 1e9:.1f} GFLOP of convolution "
          "per forward at 512 px (fwd+VJP: twice that)")
    print(fmt_table(headers, table))
    ratios = _ratio_rows(rows, rounds, sizes)
    if ratios:
        print("\nORT / torch (time: median and range of the per-round ratios)")
        print(fmt_table(["size", "step", "time ratio", "range", "peak RSS ratio"], ratios))
    print(f"\nload average at the end: {info['loadavg_end']}. 'other load': mean cores used by "
          "other processes during the kept calls; 'redone': calls discarded for other load.")
