"""``ostransfer batch``: the same bytes as the jobs run one by one, a rerun skips what is
done, a corrupt input fails its own job with one line while the others finish."""

from __future__ import annotations

import json
import shutil

import pytest

from ostransfer.cli import transfer
from ostransfer.run import batch as bt, batch_api

from test_cli import CONTENT, STYLE, invoke, loaded  # noqa: F401

SHARED = ["--size", "40", "--evaluations", "2"]
ONE = ["--workers", "1"]  # in this process (the default is one worker per core)
FAST = {"samples": 64, "style_samples": 100, "per_round": 2}


@pytest.fixture
def model(loaded, monkeypatch):
    monkeypatch.setattr(transfer, "Stylizer", lambda device, threads=None: loaded)
    monkeypatch.setattr(batch_api, "Stylizer", lambda device, threads=None: loaded)


def _jobs(tmp_path):
    shutil.copy(CONTENT, tmp_path / "cat.jpg")
    shutil.copy(STYLE, tmp_path / "night.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    rows = [{"content": "cat.jpg", "style": "night.jpg", **FAST},
            {"content": "cat.jpg", "style": "night.jpg", "seed": 3, **FAST},
            {"content": "cat.jpg", "styles": ["night.jpg", "night.jpg"], "content_weight": 2, **FAST},
            {"content": "broken.jpg", "style": "night.jpg", **FAST}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_batch_matches_single_runs_skips_on_rerun_and_isolates_a_failure(tmp_path, model):
    jobs = _jobs(tmp_path)
    out = tmp_path / "out"
    first = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json", "-q")
    assert first.exit_code == 1, first.output  # one job failed
    summary = json.loads(first.stdout)
    assert [j["status"] for j in summary["jobs"]] == ["done", "done", "done", "failed"]
    assert "broken.jpg" in summary["jobs"][3]["error"] and "\n" not in summary["jobs"][3]["error"]
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and len(set(names)) == 3
    assert any("seed-3" in n for n in names) and any("a-2" in n for n in names)
    # the first job, run alone with the same options: the same bytes (recipe included)
    alone = tmp_path / "alone.png"
    assert invoke("stylize", tmp_path / "cat.jpg", tmp_path / "night.jpg", *SHARED,
                  "--samples", "64", "--style-samples", "100", "--per-round", "2", "-q",
                  "-o", alone).exit_code == 0
    assert alone.read_bytes() == (out / summary["jobs"][0]["output"].split("/")[-1]).read_bytes()
    again = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json", "-q")
    assert [j["status"] for j in json.loads(again.stdout)["jobs"]] == \
        ["skipped", "skipped", "skipped", "failed"]


def test_bad_job_files_are_one_line(tmp_path):
    bad = tmp_path / "jobs.csv"
    bad.write_text("content,style,sharpness\na.png,b.png,1\n")
    with pytest.raises(ValueError, match="unknown column 'sharpness'"):
        bt.read_jobs(bad)
    bad.write_text("content\na.png\n")
    with pytest.raises(ValueError, match="needs a content and a style"):
        bt.read_jobs(bad)
    result = invoke("batch", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "give a JOBS file" in result.stderr
    result = invoke("batch", "--contents", str(tmp_path / "*.nothing"), "--styles", "x",
                    "-o", tmp_path / "out")
    assert result.exit_code == 2 and "matches no file" in result.stderr


def test_a_pool_of_two_workers_gives_the_same_bytes_as_one_process(tmp_path, model,
                                                                    monkeypatch):
    from ostransfer.cli import progress

    heard = []  # the workers' progress reports, as the display in this process hears them
    real = progress.BatchDisplay.job_progress
    monkeypatch.setattr(progress.BatchDisplay, "job_progress",
                        lambda self, *report: (heard.append(report), real(self, *report)))
    jobs = _jobs(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke("batch", jobs, "-o", one, *SHARED, *ONE, "-q").exit_code == 1
    result = invoke("batch", jobs, "-o", two, *SHARED, "--workers", "2", "--json")
    assert result.exit_code == 1, result.output
    statuses = sorted(j["status"] for j in json.loads(result.stdout)["jobs"])
    assert statuses == ["done", "done", "done", "failed"]
    # every evaluation of the three good jobs (2 each) was reported, with its share of the job
    assert len(heard) == 6 and {r[1] for r in heard} == {f"{jobs}:{n}" for n in (1, 2, 3)}
    assert sorted(r[2] for r in heard) == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    assert "jobs.jsonl:4: failed" in result.stderr
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_the_same_jobs_on_a_local_ray_give_the_same_bytes(tmp_path, model):
    ray = pytest.importorskip("ray")  # in the test extra: skipped only outside CI
    jobs = _jobs(tmp_path)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    assert invoke("batch", jobs, "-o", local, *SHARED, *ONE, "-q").exit_code == 1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = invoke("batch", jobs, "-o", cluster, *SHARED, "--cluster", "local",
                        "--workers", "2", "--json", "-q")
    finally:
        ray.shutdown()
    assert result.exit_code == 1, result.output
    assert sorted(j["status"] for j in json.loads(result.stdout)["jobs"]) == \
        ["done", "done", "done", "failed"]
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in cluster.iterdir())
    for name in names:
        assert (local / name).read_bytes() == (cluster / name).read_bytes(), name


def test_cluster_without_ray_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    jobs = _jobs(tmp_path)
    result = invoke("batch", jobs, "-o", tmp_path / "out", "--cluster", "auto")
    assert result.exit_code == 2 and "pip install 'ostransfer[cluster]'" in result.stderr


def test_ctrl_c_stops_the_batch_in_its_job_and_a_rerun_continues(tmp_path, model, monkeypatch):
    import os
    import signal

    from ostransfer.cli import progress

    jobs = _jobs(tmp_path)
    out = tmp_path / "out"
    shown, calls = progress.ProgressDisplay.__call__, []

    def display(self, p):  # Ctrl-C at the second job's first evaluation (2 per job)
        shown(self, p)
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(progress.ProgressDisplay, "__call__", display)
    stopped = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json")
    assert stopped.exit_code == 130, stopped.output
    summary = json.loads(stopped.stdout)
    assert summary["interrupted"] and [j["status"] for j in summary["jobs"]] == ["done"]
    assert "run the same command again to continue" in stopped.stderr
    assert [p.name for p in out.iterdir()] == [summary["jobs"][0]["output"].split("/")[-1]]
    monkeypatch.setattr(progress.ProgressDisplay, "__call__", shown)
    again = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json", "-q")
    assert [j["status"] for j in json.loads(again.stdout)["jobs"]] == \
        ["skipped", "done", "done", "failed"]
    assert len(list(out.iterdir())) == 3


def test_the_batch_display_has_a_bar_over_the_jobs_and_one_per_running_job():
    import io

    from rich.console import Console

    from ostransfer.cli.progress import BatchDisplay

    board = BatchDisplay(3, Console(file=io.StringIO(), force_terminal=True))
    board.job_progress(0, "a", 0.25, "scale 1/2 64px, 3/12 evals")
    board.job_progress(1, "b", 0.5, "scale 2/2 80px, 1/2 evals")
    board.job_done("a", "done")
    board.job_progress(0, "a", 0.3, "late")  # a report that arrives after the result
    board.job_done("c", "skipped")
    tasks = {t.description.strip(): t for t in board.bar.tasks}
    assert sorted(tasks) == ["b", "jobs"]
    assert tasks["b"].completed == 0.5 and tasks["jobs"].completed == 2
    assert tasks["jobs"].fields["note"] == "2/3 (1 done, 1 skipped)"


def test_the_python_api_runs_the_same_jobs_to_the_same_bytes(tmp_path, model, monkeypatch):
    import ostransfer

    jobs = _jobs(tmp_path)
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert invoke("batch", jobs, "-o", cli_out, *SHARED, *ONE, "-q").exit_code == 1
    outcomes = list(ostransfer.batch(jobs, api_out, workers=1, size=40, evaluations=2))
    assert [o.status for o in outcomes] == ["done", "done", "done", "failed"]
    assert "broken.jpg" in outcomes[3].error
    for outcome in outcomes[:3]:
        assert outcome.output.read_bytes() == (cli_out / outcome.output.name).read_bytes()
    # jobs as dicts, relative to the current folder; a rerun skips what is done
    monkeypatch.chdir(tmp_path)
    rows = [{"content": "cat.jpg", "style": "night.jpg", **FAST}]
    assert [o.status for o in ostransfer.batch(rows, api_out, workers=1, size=40,
                                                   evaluations=2)] == \
        ["skipped"]
    with pytest.raises(ValueError, match="an option this version does not know: .sharpness.$"):
        list(ostransfer.batch(rows, api_out, sharpness=1))



def _children(pid: int) -> list[int]:
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc")
def test_sigterm_with_workers_ends_the_workers_too(tmp_path, model_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    jobs = _jobs(tmp_path)
    batch = subprocess.Popen([sys.executable, "-m", "ostransfer", "batch", str(jobs), "-o",
                              str(tmp_path / "out"), "--size", "40", "--evaluations", "500",
                              "--workers", "2", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_children(batch.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(batch.pid)
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(3)  # the workers load the model and start their jobs
    batch.send_signal(signal.SIGTERM)
    assert batch.wait(timeout=60) == 130
    time.sleep(1)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == []


def test_a_tile_chosen_for_memory_is_in_the_recipe_and_a_rerun_still_skips(tmp_path, model,
                                                                           monkeypatch):
    """A job that gives no tile, run where memory asks for tiles (the choice stubbed to cores
    of 16 px): its result's recipe records the core it was read with, so --recipe remakes the
    same bytes anywhere; a rerun still counts it done; a job that names another tile does not."""
    from dataclasses import replace

    from ostransfer.run import job as run_job
    from ostransfer.run.recipe import read_recipe

    shutil.copy(CONTENT, tmp_path / "cat.jpg")
    shutil.copy(STYLE, tmp_path / "night.jpg")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"content": "cat.jpg", "style": "night.jpg", **FAST}) + "\n")
    fit = run_job.fit_to_memory
    monkeypatch.setattr(run_job, "fit_to_memory", lambda *a, **k: replace(fit(*a, **k), tile=16))
    out = tmp_path / "out"
    first = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json", "-q")
    assert first.exit_code == 0, first.output
    result = out / json.loads(first.stdout)["jobs"][0]["output"].split("/")[-1]
    assert read_recipe(result)["options"]["tile"] == 16
    again = invoke("batch", jobs, "-o", out, *SHARED, *ONE, "--json", "-q")
    assert [j["status"] for j in json.loads(again.stdout)["jobs"]] == ["skipped"]
    monkeypatch.setattr(run_job, "fit_to_memory", fit)  # the rerun reads with the recorded tile
    remade = tmp_path / "remade.png"
    assert invoke("stylize", "--recipe", result, "-o", remade, "-q").exit_code == 0
    assert remade.read_bytes() == result.read_bytes()
    assert not bt.already_done(result, {**read_recipe(result),
                                        "options": {**read_recipe(result)["options"], "tile": 32}})


def test_a_batch_without_workers_takes_one_per_core_as_the_jobs_and_memory_allow(tmp_path):
    from ostransfer.run.options import Options
    from ostransfer.run.pool import auto_workers, job_memory

    jobs = [Options(size=256)] * 3
    need = job_memory(jobs[0])
    assert 0 < need < job_memory(Options(size=512))
    assert auto_workers(jobs, cores=2, available=10 * need) == 2
    assert auto_workers(jobs, cores=16, available=10 * need) == 3  # no more than the jobs
    assert auto_workers(jobs, cores=16, available=int(2.5 * need)) == 2  # what memory holds
    assert auto_workers(jobs, cores=16, available=need // 2) == 1  # one, in this process
    assert auto_workers(jobs, threads=2, cores=4, available=10 * need) == 2  # 2 cores each
    planned = [(None, o, tmp_path / f"{i}.png") for i, o in enumerate(jobs)]
    assert batch_api.local_workers(None, None, planned, None, "cpu") == \
        auto_workers(jobs, cores=None)
    for _, _, out in planned[1:]:  # a rerun with one job left: in this process
        out.write_bytes(b"done before")
    assert batch_api.local_workers(None, None, planned, None, "cpu") == 1
    assert batch_api.local_workers(None, None, planned, None, "cuda") == 1
    assert batch_api.local_workers(None, "auto", planned, None, "cpu") is None  # Ray's count
    assert batch_api.local_workers(5, None, planned, None, "cpu") == 5
