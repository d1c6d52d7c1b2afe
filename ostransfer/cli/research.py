"""The researchers' commands: evaluate (independent quality measures), compare (against
torch autograd), score, bench.

The work is done in ``research.compare`` (which imports torch, so it is imported only when
``compare`` runs), ``research.score`` and ``research.bench``; this module parses options and
prints tables (or JSON with ``--json``). Progress messages go to stderr.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape

from ..presets import DEFAULT_PRESET
from .common import UsageError, clear_errors, err, fail, parse_ints

app = typer.Typer()


def _stdout():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: do not wrap the tables at 80 columns
        console = Console(highlight=False, width=220)
    return console


def _logger(quiet: bool):
    if quiet:
        return None
    return lambda message: err.print(f"[dim]{message}[/]", highlight=False)


def _g(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _e(value: Any) -> str:
    return "-" if value is None else f"{value:.2e}"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(title: str, headers: list[str]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    return table


def _show(report: dict, json_out: bool, printer) -> None:
    """The report as JSON on stdout, or as the printer's tables."""
    from ..research.report import dumps

    if json_out:
        typer.echo(dumps(report))
    else:
        printer(report)


def _fail_on_runtime(exc: Exception) -> None:
    fail(escape(str(exc)), code=1)


# ---------------------------------------------------------------------------------------
# evaluate


def print_evaluate(report: dict) -> None:
    out = _stdout()
    rows = report["images"]
    style_chroma = rows[0]["style_chroma"] if rows else float("nan")
    table = _table("Quality (independent of the STROTSS losses; lower is better on the first "
                   "three, rank in brackets)",
                   ["image", "content LPIPS", "style SWD", "colour SWD (Lab)",
                    f"chroma (style {style_chroma:.1f})"])
    for row in rows:
        cells = [f"{row[k]:.4g} ({row['ranks'][k]})" for k in ("content", "style", "colour")]
        table.add_row(row["image"], *cells, f"{row['chroma']:.1f}")
    out.print(table)
    for name, text in report["measures"].items():
        out.print(f"{name}: {text}")


@app.command(no_args_is_help=True)
def evaluate(
    content: Path = typer.Argument(..., metavar="CONTENT", help="content image"),
    style: Path = typer.Argument(..., metavar="STYLE", help="style image"),
    images: List[Path] = typer.Argument(..., metavar="IMAGE", help="finished images to measure"),
    json_out: bool = typer.Option(False, "--json", help="print the measures as JSON"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress messages"),
) -> None:
    """Measure finished images (ours or another implementation's) with measures no STROTSS
    loss uses: LPIPS to the content, sliced Wasserstein distances of AlexNet features and of
    CIELAB colours to the style, and the mean chroma."""
    from ..research.evaluate import run_evaluate

    with clear_errors():
        report = run_evaluate(content, style, images, log=_logger(quiet))
    _show(report, json_out, print_evaluate)


# ---------------------------------------------------------------------------------------
# compare


def print_compare(report: dict) -> None:
    out = _stdout()
    s = report["settings"]
    out.print(f"compare: {s['preset']} preset, {s['width']}x{s['height']} px, a = {s['content_weight']:g}, "
              f"colour weight {s.get('color_weight', 0.0):g}, "
              f"N = {s['samples']}, M = {s['style_samples']}, seed {s['seed']}, "
              f"{s['threads']} threads; reference: {s['reference']}")
    for point in report["agreement"]:
        table = _table(f"Loss terms ({point['point']})",
                       ["term", "ours", "torch f64", "ours rel diff", "torch f32", "f32 rel diff",
                        "floor", "ours / torch f32"])
        for name, t in point["terms"].items():
            table.add_row(name, f"{t['ours']:.8g}", f"{t['torch_f64']:.8g}", _e(t["ours_rel_diff"]),
                          f"{t['torch_f32']:.8g}", _e(t["torch_f32_rel_diff"]), _e(t.get("floor")),
                          _ratio(t.get("ratio_to_torch_f32")))
        out.print(table)
    table = _table("Image gradient against torch float64 (torch float32 shows float32's own floor)",
                   ["point", "ours rel error", "ours cosine", "torch f32 rel error", "torch f32 cosine",
                    "floor", "ours / torch f32"])
    for point in report["agreement"]:
        g, g32 = point["gradient"], point["gradient_torch_f32"]
        table.add_row(point["point"], _e(g["rel_error"]), f"{g['cosine']:.10f}",
                      _e(g32["rel_error"]), f"{g32['cosine']:.10f}", _e(point.get("gradient_floor")),
                      _ratio(point["error_ratio_to_torch_f32"]))
    out.print(table)
    out.print("ours / torch f32: our error against float64 over torch float32's, each raised to "
              "the floor first (2 float32 ulps of a term's value, 4 * 2^-23 for the gradient): "
              "errors under it are float32 rounding, and their ratio luck")
    timing, memory = report["timing"], report["memory"] or {}
    table = _table(f"Time per evaluation ({timing['source']}) and peak memory",
                   ["side", "s / eval (median)", "evals / s", "peak RSS MB", "RSS after setup MB"])
    for name, label in (("ours", "ours (ONNX Runtime, float32)"), ("torch_f32", "torch autograd float32"),
                        ("torch_f64_reference", "torch reference float64 (1 call)")):
        t = timing[name]
        m = memory.get(name, {})
        table.add_row(label, f"{t['median_s']:.4f}", f"{t['per_s']:.3g}",
                      _g(m.get("peak_rss_mb"), 5), _g(m.get("setup_rss_mb"), 5))
    out.print(table)
    out.print(f"speed-up over torch float32: {timing['speedup_vs_torch_f32']:.2f}x")
    run = report["run"]
    if run:
        dtype = run["torch_dtype"].replace("float", "f")
        table = _table(f"L-BFGS-B from the same start on the same sample sets "
                       f"({run['evaluations']} evaluations, {run['per_round']} per sample set)",
                       ["evaluation", "ours loss", f"torch {dtype} loss", "rel diff"])
        ours, theirs = run["ours"]["loss"], run["torch"]["loss"]
        shown = sorted({1, len(ours)} | {s for s in run["sample_set_starts"]}
                       | {s - 1 for s in run["sample_set_starts"][1:]})
        for i in shown:
            if 1 <= i <= min(len(ours), len(theirs)):
                a, b = ours[i - 1], theirs[i - 1]
                table.add_row(str(i), f"{a:.8g}", f"{b:.8g}", _e(abs(a - b) / abs(b) if b else abs(a - b)))
        out.print(table)
        out.print(f"run time: ours {run['ours']['seconds']:.2f} s "
                  f"({run['ours']['seconds_per_evaluation']:.3f} s/eval), torch {dtype} "
                  f"{run['torch']['seconds']:.2f} s ({run['torch']['seconds_per_evaluation']:.3f} s/eval); "
                  f"curves first differ by > 1e-3 at evaluation {_g(run['first_divergence'])}; "
                  f"final images differ by {run['final_image_mean_abs_diff']:.2e} on average")
        if run.get("plot"):
            out.print(f"loss curves: {run['plot']}")
    out.print(f"largest gradient rel error {report['max_gradient_rel_error']:.2e}, "
              f"smallest cosine {report['min_gradient_cosine']:.10f}; largest ratio of our error "
              f"to torch float32's (terms and gradient, floors applied) "
              f"{_ratio(report.get('max_error_ratio_to_torch_f32'))}")


@app.command(no_args_is_help=True)
def compare(
    content: Path = typer.Argument(..., help="content image"),
    style: Path = typer.Argument(..., help="style image"),
    size: int = typer.Option(128, help="long side of the output, px"),
    preset: str = typer.Option(DEFAULT_PRESET, help="paper or strotss"),
    content_weight: Optional[float] = typer.Option(None, help="content weight a (default: the preset's)"),
    color_weight: Optional[float] = typer.Option(None, help="weight of the colour term (default: the "
                                                 "preset's, as in stylize)"),
    samples: int = typer.Option(1024, help="output hypercolumns per sample set (N)"),
    style_samples: int = typer.Option(5000, help="style hypercolumns (M)"),
    evaluations: int = typer.Option(30, help="evaluations of the optimisation run (0: no run)"),
    per_round: int = typer.Option(10, help="L-BFGS-B evaluations per sample set in the run"),
    repeat: int = typer.Option(3, help="timed evaluations per side"),
    seed: int = typer.Option(0, help="random seed of the sample sets"),
    threads: Optional[int] = typer.Option(None, help="threads for ONNX Runtime and torch (default: usable cores)"),
    memory: bool = typer.Option(True, help="measure time and peak memory in one fresh process per side "
                                "(--no-memory: time in this process, no memory figures)"),
    run_dtype: str = typer.Option("float32", help="precision of the torch side of the run: float32 or "
                                  "float64 (L-BFGS-B amplifies rounding: the curves drift apart "
                                  "after a while either way)"),
    plot: Optional[Path] = typer.Option(None, help="PNG of the loss curves "
                                        "(default: compare-PRESET-SIZEpx.png here)"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress messages"),
) -> None:
    """Check our hand-written gradients against torch autograd, and time both.

    For one image and one sample set: each loss term from both, the image gradient's
    relative error and cosine similarity (against a float64 torch reference), time and
    peak memory per evaluation; then a short L-BFGS-B run with both from the same start on
    the same sample sets, with the loss curves as numbers and a PNG."""
    from ..research.host import torch_available

    if not torch_available() or find_spec("matplotlib") is None:
        fail(escape("compare needs torch and matplotlib: pip install 'ostransfer[compare]'"))
    from ..research.compare import CompareSettings, run_compare  # imports torch

    with clear_errors():
        for path in (content, style):
            if not path.is_file():
                raise UsageError(f"{path}: no such file")
        if plot is None and evaluations > 0:
            plot = Path(f"compare-{preset}-{size}px.png")
        if plot is not None and plot.suffix.lower() != ".png":
            raise UsageError(f"{plot}: the plot is written as PNG; use a .png name")
        try:
            report = run_compare(content, style, CompareSettings(
                size=size, preset=preset, content_weight=content_weight,
                color_weight=color_weight, samples=samples,
                style_samples=style_samples, evaluations=evaluations, per_round=per_round,
                repeat=repeat, seed=seed, threads=threads, memory=memory, plot=plot,
                run_dtype=run_dtype), log=_logger(quiet))
        except RuntimeError as exc:
            _fail_on_runtime(exc)
    _show(report, json_out, print_compare)


# ---------------------------------------------------------------------------------------
# score


def print_score(report: dict) -> None:
    out = _stdout()
    s = report["settings"]
    table = _table(f"Scores ({s['preset']} preset at {s['width']}x{s['height']} px, N = {s['samples']}, "
                   f"M = {s['style_samples']}, seed {s['seed']}; lower is better, rank in brackets)",
                   ["image", "content", "moment", "remd", "palette", f"total (a = {s['content_weight']:g})"])
    for row in report["images"]:
        cells = [f"{row['terms'][k]:.6g} ({row['ranks'][k]})" for k in ("content", "moment", "remd", "palette")]
        table.add_row(row["image"], *cells, f"{row['total']:.6g} ({row['ranks']['total']})")
    out.print(table)
    for note in report["notes"]:
        out.print(f"note: {note}")


@app.command(no_args_is_help=True)
def score(
    content: Path = typer.Argument(..., help="content image"),
    style: Path = typer.Argument(..., help="style image"),
    images: List[Path] = typer.Argument(..., help="one or more finished images to score"),
    size: int = typer.Option(512, help="long side the content (and each image) is scored at, px"),
    preset: str = typer.Option(DEFAULT_PRESET, help="paper or strotss: the layers and loss terms"),
    content_weight: Optional[float] = typer.Option(
        None, help="content weight of the total (default: the preset's; paper: times N / 1024, "
                   "the balance of a default run)"),
    samples: int = typer.Option(4096, help="output/content locations of the yardstick (N)"),
    style_samples: int = typer.Option(20000, help="style hypercolumns of the yardstick (M)"),
    seed: int = typer.Option(0, help="seed of the yardstick's sample set"),
    device: str = typer.Option("cpu", help="cpu, cuda or auto"),
    json_out: bool = typer.Option(False, "--json", help="print the scores as JSON"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress messages"),
) -> None:
    """Score finished images (ours or another implementation's) on one fixed yardstick.

    Each image is resized to the content's size and read at one large seeded sample set;
    the output has each loss term (unweighted) and the preset's total, lower is better."""
    from ..research.score import run_score

    with clear_errors():
        report = run_score(content, style, images, size=size, preset=preset,
                           content_weight=content_weight, samples=samples,
                           style_samples=style_samples, seed=seed, device=device,
                           log=_logger(quiet))
    _show(report, json_out, print_score)


# ---------------------------------------------------------------------------------------
# bench


def print_bench(report: dict) -> None:
    out = _stdout()
    h, s, p = report["host"], report["settings"], report["peak"]
    out.print(f"host: {h.get('cpu')} ({h.get('usable_cores')} usable of {h.get('logical_cores')} cores), "
              f"{h.get('platform')}; load average at start {h.get('loadavg')}")
    out.print("versions: " + ", ".join(f"{k} {v}" for k, v in h.get("versions", {}).items()))
    out.print(f"peak: {p['what']}: {p['gflops']:.1f} GFLOP/s; {s['preset']} preset, N = {s['samples']}, "
              f"M = {s['style_samples']}, {s['threads']} threads, device {s['device']}")
    torch_cols = ["torch evals/s", "torch VGG s", "torch VGG GFLOP/s", "torch peak MB",
                  "VGG speed-up", "eval speed-up"] if s["torch"] else []
    table = _table("Objective evaluations (forward + losses + VJP) and the VGG part (forward + VJP)",
                   ["size", "evals/s", "s/eval", "VGG s", "VGG GFLOP/s", "% of peak", "losses s",
                    "peak MB"] + torch_cols)
    for row in report["results"]:
        o, t = row["ours"], row["torch"]
        cells = [f"{row['size']}", f"{o['evals_per_s']:.3g}", f"{o['objective_s']:.3f}",
                 f"{o['vgg_s']:.3f}", f"{o['vgg_gflops']:.1f}", f"{100 * o['vgg_peak_fraction']:.0f}%",
                 f"{o['losses_s']:.3f}", f"{o['peak_rss_mb']:.0f}"]
        if s["torch"]:
            cells += [f"{t['evals_per_s']:.3g}", f"{t['vgg_s']:.3f}", f"{t['vgg_gflops']:.1f}",
                      f"{t['peak_rss_mb']:.0f}", f"{row['vgg_speedup']:.2f}x",
                      f"{row['objective_speedup']:.2f}x"]
        table.add_row(*cells)
    out.print(table)


@app.command()
def bench(
    sizes: str = typer.Option(",".join(map(str, (128, 256, 512, 1024))),
                              help="square image sizes, px, comma-separated"),
    repeat: int = typer.Option(3, help="timed calls per measurement (after one warm-up)"),
    preset: str = typer.Option(DEFAULT_PRESET, help="paper or strotss"),
    samples: int = typer.Option(1024, help="output hypercolumns (N)"),
    style_samples: int = typer.Option(5000, help="style hypercolumns (M)"),
    torch: Optional[bool] = typer.Option(None, "--torch/--no-torch",
                                         help="also measure torch autograd (default: when installed)"),
    threads: Optional[int] = typer.Option(None, help="threads for ONNX Runtime and torch (default: usable cores)"),
    device: str = typer.Option("cpu", help="cpu, cuda or auto"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="also write the JSON report here"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress messages"),
) -> None:
    """Measure evaluations per second and peak memory per image size.

    Also the VGG part's achieved GFLOP/s against a matmul peak measured in the same run,
    torch autograd beside ours when installed, and the host it ran on."""
    from ..research.bench import run_bench
    from ..research.report import dumps

    with clear_errors():
        size_list = parse_ints(sizes, "--sizes")
        try:
            report = run_bench(size_list, repeat=repeat, preset=preset, samples=samples,
                               style_samples=style_samples, with_torch=torch, threads=threads,
                               device=device, log=_logger(quiet))
        except RuntimeError as exc:
            _fail_on_runtime(exc)
    text = dumps(report)
    if output is not None:
        output.write_text(text + "\n")
    if json_out:
        typer.echo(text)
    else:
        print_bench(report)
