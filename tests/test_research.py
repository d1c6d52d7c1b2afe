"""The research commands: compare (against torch autograd), score and bench.

Small sizes and sample counts, one thread: the machine running the tests may be shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ostransfer
from ostransfer.cli import app
from ostransfer.files import sample_image
from ostransfer.research.charts import line_chart
from ostransfer.nets.vgg16 import conv_flops
from ostransfer.research.measure import loss_flops

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
runner = CliRunner()


def invoke(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_research_modules_do_not_import_torch():
    code = ("import sys, ostransfer, ostransfer.cli, ostransfer.research.measure, "
            "ostransfer.research.score, ostransfer.research.bench, ostransfer.cli.research; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flop_counts():
    # VGG16's 13 convolutions at 224 px: 15.35 G multiply-adds (the well-known ~15.5 G
    # of the whole network less its classifier)
    assert conv_flops(224, 224) / 2 == pytest.approx(15.35e9, rel=0.01)
    assert conv_flops(64, 64) < conv_flops(64, 128) < conv_flops(128, 128)
    assert loss_flops(1024, 5000, 2179) == 2 * 1024 * 5000 * 2179 + 4 * 1024 ** 2 * 2179 \
        + 4 * 1024 * 2179 ** 2


def test_line_chart_writes_a_png(tmp_path):
    from PIL import Image

    series = {"ours": [3.0, 2.5, 2.0, 1.9], "torch": [3.0, 2.6, 2.1, 1.8]}
    for path in (line_chart(tmp_path / "b.png", series, title="t", vlines=[2.5]),):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
            colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
        assert len(colours) > 3  # more than a blank canvas


# ---------------------------------------------------------------------------------------
# compare


@pytest.fixture
def one_torch_thread():
    """torch's OpenMP pool spins badly on a loaded machine; one thread is quicker here."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_torch_objective_matches_the_reference(engine, torch_vgg64, one_torch_thread):
    """compare's hoisted-constants torch objective equals torch_reference.objective."""
    from ostransfer.research import torch_reference as tr
    from ostransfer.method.objective import style_hypercolumns
    from ostransfer.method.sampling import grid_locations
    from ostransfer.research.torch_objective import TorchObjective

    rng = np.random.default_rng(4)
    content = rng.random((24, 32, 3))
    image = np.clip(content + 0.1 * rng.standard_normal(content.shape), 0, 1)
    style = style_hypercolumns(engine, rng.random((20, 28, 3), dtype=np.float32), "paper", 80,
                               rng).astype(np.float64)
    ys, xs = grid_locations(24, 32, 64, rng)
    for preset, weight in (("paper", 10.0), ("strotss", 0.5)):
        objective = TorchObjective(torch_vgg64, content, style, preset, weight, 64)
        objective.set_locations(ys, xs)
        value, grad, terms = objective(image)
        c = tr.image_hypercolumns(torch_vgg64, content, ys, xs, preset)
        ref_value, ref_grad, ref_terms = tr.objective(torch_vgg64, image, c, style, ys, xs,
                                                      preset, weight)
        assert value == pytest.approx(ref_value, rel=1e-12)
        assert terms == pytest.approx(ref_terms, rel=1e-10, abs=1e-14)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("preset", ["paper", "strotss"])
def test_compare_reports_agreement_with_torch(tmp_path, preset, capsys):
    pytest.importorskip("torch")
    from ostransfer.cli.research import print_compare

    plot = tmp_path / "curves.png"
    result = invoke(["compare", CONTENT, STYLE, "--size", 40, "--preset", preset,
                     "--samples", 128, "--style-samples", 500, "--evaluations", 2,
                     "--per-round", 1, "--repeat", 1, "--threads", 1, "--no-memory",
                     "--plot", plot, "--json", "-q"])
    report = json.loads(result.stdout)
    assert report["settings"]["preset"] == preset
    assert [p["point"] for p in report["agreement"]] == ["start", "after run"]
    for point in report["agreement"]:
        assert point["gradient"]["rel_error"] < 1e-4, point
        assert point["gradient"]["cosine"] > 0.9999, point
        for name, term in point["terms"].items():
            assert term["ours_rel_diff"] < 1e-4 or abs(term["ours"] - term["torch_f64"]) < 1e-9, name
    assert report["max_gradient_rel_error"] < 1e-4
    timing = report["timing"]
    assert timing["ours"]["median_s"] > 0 and timing["torch_f32"]["median_s"] > 0
    assert timing["speedup_vs_torch_f32"] > 0
    assert report["memory"] is None  # --no-memory
    run = report["run"]
    assert len(run["ours"]["loss"]) == len(run["torch"]["loss"]) == 2
    assert run["sample_set_starts"] == [1, 2]
    # the same start and sample set: the first evaluation agrees to float32 accuracy
    assert run["ours"]["loss"][0] == pytest.approx(run["torch"]["loss"][0], rel=1e-5)
    assert run["plot"] == str(plot) and plot.stat().st_size > 1000
    assert report["host"]["logical_cores"] >= 1
    # the human-readable tables of the same report
    print_compare(report)
    text = capsys.readouterr().out
    for title in ("Loss terms (start)", "Loss terms (after run)",
                  "Image gradient against torch float64", "speed-up", "L-BFGS-B", str(plot)):
        assert title in text, title


def test_compare_without_torch_says_how_to_get_it(monkeypatch):
    import ostransfer.research.host

    monkeypatch.setattr(ostransfer.research.host, "torch_available", lambda: False)
    result = runner.invoke(app, ["compare", str(CONTENT), str(STYLE)])
    assert result.exit_code == 2
    assert "ostransfer[compare]" in result.output


# ---------------------------------------------------------------------------------------
# score


@pytest.fixture(scope="module")
def stylised(tmp_path_factory, model_dir):
    path = tmp_path_factory.mktemp("score") / "stylised.png"
    image = ostransfer.stylize(CONTENT, STYLE, size=64, evaluations=8, per_round=8,
                               samples=256, style_samples=1000, seed=0, device="cpu")
    image.save(path)
    return path


@pytest.mark.parametrize("preset", ["paper", "strotss"])
def test_score_ranks_stylised_and_content_images(stylised, preset):
    result = invoke(["score", CONTENT, STYLE, stylised, CONTENT, "--size", 64,
                     "--preset", preset, "--samples", 1024, "--style-samples", 4000, "--json",
                     "-q"])
    report = json.loads(result.stdout)
    assert report["settings"]["samples"] == 1024 and report["settings"]["style_samples"] == 4000
    styled, plain = report["images"]
    assert styled["image"] == str(stylised) and plain["image"] == str(CONTENT)
    # the content image is its own content: l_c = 0, better than any stylised output
    assert plain["terms"]["content"] == pytest.approx(0.0, abs=1e-6)
    assert plain["terms"]["content"] < styled["terms"]["content"]
    assert plain["ranks"]["content"] == 1
    for term in ("moment", "remd", "palette"):
        assert styled["terms"][term] < plain["terms"][term], term
        assert styled["ranks"][term] == 1


def test_score_weighs_content_as_a_default_run(stylised):
    """paper: the content term scales like 1/N, so the default weight scales with N."""
    from ostransfer.presets import DEFAULT_CONTENT_WEIGHT

    common = ["score", CONTENT, STYLE, stylised, "--size", 32, "--style-samples", 1000, "--json",
              "-q", "--preset", "paper"]
    at_256 = json.loads(invoke(common + ["--samples", 256]).stdout)
    at_512 = json.loads(invoke(common + ["--samples", 512]).stdout)
    assert at_256["settings"]["content_weight"] == DEFAULT_CONTENT_WEIGHT["paper"] / 4
    assert at_512["settings"]["content_weight"] == DEFAULT_CONTENT_WEIGHT["paper"] / 2
    given = json.loads(invoke(common + ["--samples", 256, "--content-weight", 7]).stdout)
    assert given["settings"]["content_weight"] == 7
    strotss = json.loads(invoke(common[:-2] + ["--samples", 256]).stdout)  # the default preset
    assert strotss["settings"]["content_weight"] == DEFAULT_CONTENT_WEIGHT["strotss"]


def test_score_is_a_fixed_yardstick(stylised, capsys):
    from ostransfer.cli.research import print_score

    args = ["score", CONTENT, STYLE, stylised, "--size", 32, "--samples", 256,
            "--style-samples", 1000, "--json", "-q"]
    first = json.loads(invoke(args).stdout)
    second = json.loads(invoke(args).stdout)
    assert first["images"] == second["images"]  # seeded: the same sample set every time
    print_score(first)
    table = capsys.readouterr().out
    assert "Scores" in table and "stylised.png" in table


# ---------------------------------------------------------------------------------------
# bench


def test_bench_json_has_the_expected_keys(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke(["bench", "--sizes", 48, "--repeat", 1, "--threads", 1, "--samples", 128,
                     "--style-samples", 500, "--json", "-o", out, "-q"])
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    assert report["schema"] == "ostransfer-bench/1"
    for key in ("cpu", "logical_cores", "usable_cores", "platform", "python", "versions"):
        assert key in report["host"], key
    assert "onnxruntime" in report["host"]["versions"]
    assert report["peak"]["gflops"] > 0
    assert report["settings"]["threads"] == 1
    (row,) = report["results"]
    assert row["size"] == 48 and row["samples"] == 128
    sides = ["ours"] + (["torch"] if report["settings"]["torch"] else [])
    for side in sides:
        r = row[side]
        for key in ("evals_per_s", "objective_s", "vgg_s", "vgg_gflops", "vgg_peak_fraction",
                    "objective_gflops", "peak_rss_mb", "setup_rss_mb", "losses_s"):
            assert r[key] is not None and r[key] > 0 or key == "losses_s", (side, key)
        assert r["peak_rss_mb"] >= r["setup_rss_mb"]
    if report["settings"]["torch"]:
        assert row["vgg_speedup"] > 0 and row["objective_speedup"] > 0
        # both sides evaluated the same objective on the same inputs
        assert row["ours"]["loss"] == pytest.approx(row["torch"]["loss"], rel=1e-4)


# ---------------------------------------------------------------------------------------
# evaluate


def test_evaluate_ranks_the_content_and_the_style_first(tmp_path, capsys):
    from PIL import Image

    from ostransfer.cli.research import print_evaluate

    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.open(CONTENT).resize((96, 64)).save(content)
    Image.open(STYLE).resize((96, 60)).save(style)
    blend = tmp_path / "blend.png"
    Image.blend(Image.open(content), Image.open(style).resize((96, 64)), 0.5).save(blend)
    result = invoke(["evaluate", content, style, content, style, blend, "--json", "-q"])
    rows = {Path(r["image"]).name: r for r in json.loads(result.stdout)["images"]}
    assert rows["content.png"]["content"] == 0 and rows["content.png"]["ranks"]["content"] == 1
    assert rows["style.png"]["style"] == 0 and rows["style.png"]["colour"] == 0
    assert rows["style.png"]["ranks"]["style"] == rows["style.png"]["ranks"]["colour"] == 1
    blended = rows["blend.png"]
    assert 0 < blended["content"] < rows["style.png"]["content"]
    assert 0 < blended["style"] < rows["content.png"]["style"]
    assert blended["style_chroma"] == rows["content.png"]["style_chroma"] > 0
    print_evaluate(json.loads(result.stdout))
    assert "content LPIPS" in capsys.readouterr().out


def test_evaluate_refuses_a_bad_image_in_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = runner.invoke(app, ["evaluate", str(CONTENT), str(STYLE), str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {bad}: not an image file Pillow can read"
