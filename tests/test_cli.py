"""The command line never crashes on bad input and never loses a run: every bad input gives
one line and exit code 2 before any work, with nothing written; interrupts, failures and
full disks keep the best image; the same seed gives the same bytes; a run stopped by a real
SIGINT resumes to the uninterrupted result."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ostransfer.cli import app
from ostransfer.cli import common, outputs, progress, transfer
from ostransfer.files import name_limit, sample_image
from ostransfer.imaging.io import load_pil
from ostransfer.run import checkpoint as ckpt
from ostransfer.run.options import Options

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
FAST = ["--samples", "64", "--style-samples", "100", "--per-round", "2", "-q"]

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0][len("error: "):]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- every bad input: one line, exit code 2, nothing written, no model loaded ---------------

def _png(path: Path, size=(96, 64)) -> Path:
    Image.new("RGB", size, (120, 80, 40)).save(path)
    return path


def _setup(tmp: Path, case: str) -> tuple[list, str]:
    """(arguments after `stylize`, the expected message) for one bad input."""
    content, style = _png(tmp / "content.png"), _png(tmp / "style.png", (64, 64))
    out = tmp / "out.png"
    ok = [content, style, "-o", out]
    if case == "missing content":
        return [tmp / "nope.jpg", style, "-o", out], f"{tmp}/nope.jpg: no such file"
    if case == "content is a folder":
        (tmp / "dir").mkdir()
        return [tmp / "dir", style, "-o", out], f"{tmp}/dir: is a folder, not an image"
    if case == "unreadable content":
        content.chmod(0)
        return ok, f"{content}: not readable (permission denied)"
    if case == "empty file":
        content.write_bytes(b"")
        return ok, f"{content}: empty file (0 bytes)"
    if case == "not an image":
        content.write_text("just some text\n")
        return ok, f"{content}: not an image file Pillow can read"
    if case == "truncated PNG":
        Image.effect_noise((96, 64), 60).convert("RGB").save(content)
        data = content.read_bytes()
        content.write_bytes(data[: len(data) // 2])
        return ok, f"{content}: corrupt or truncated image (image file is truncated)"
    if case == "truncated JPEG":
        jpeg = tmp / "content.jpg"
        Image.effect_noise((96, 64), 60).convert("RGB").save(jpeg, quality=90)
        data = jpeg.read_bytes()
        jpeg.write_bytes(data[: len(data) * 2 // 3])
        return [jpeg, style, "-o", out], f"{jpeg}: corrupt or truncated image (image file is truncated"
    if case == "corrupt PNG data":
        Image.effect_noise((96, 64), 60).convert("RGB").save(content)
        data = bytearray(content.read_bytes())
        data[len(data) // 2] ^= 0xFF
        content.write_bytes(bytes(data))
        return ok, f"{content}: corrupt or truncated image ("
    if case == "tiny content":
        _png(content, (8, 8))
        return ok, f"{content}: the image is 8x8 px; VGG16 needs at least 16 px on each side"
    if case == "1x1 style":
        _png(style, (1, 1))
        return ok, f"{style}: the image is 1x1 px; VGG16 needs at least 16 px on each side"
    if case == "too thin at the final scale":
        _png(content, (1000, 60))
        return ok + ["--size", "100"], (f"{content}: at size 100 the output would be 100x6 px, "
                                        f"under the 16 px VGG16 needs on the short side; use a "
                                        f"size of at least 259")
    if case == "absurd size for the memory":
        return ok + ["--size", "8192"], "a 8192 px run needs about "
    if case == "memory budget not a size":
        return ok + ["--max-memory", "lots"], "--max-memory 'lots' is not a size like 8G or 512M"
    if case == "tile not a multiple of 16":
        return ok + ["--tile", "100"], "tile must be a multiple of 16 px, got 100"
    if case == "size over the limit":
        return ok + ["--size", "9000"], "size must be between 16 and 8192 px, got 9000"
    if case == "output folder missing":
        return [content, style, "-o", tmp / "no" / "out.png"], \
            f"{tmp}/no/out.png: folder {tmp}/no does not exist"
    if case == "output folder not writable":
        folder = tmp / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        if os.geteuid() == 0:  # root writes anywhere: use a folder nobody can write to
            folder = Path("/proc")
        return [content, style, "-o", folder / "out.png"], \
            f"{folder}/out.png: folder {folder} is not writable"
    if case == "output is the content":
        return [content, style, "-o", content, "--overwrite"], \
            f"{content}: the output would overwrite an input image"
    if case == "output is a hard link to the style":
        os.link(style, tmp / "link.png")
        return [content, style, "-o", tmp / "link.png", "--overwrite"], \
            f"{tmp}/link.png: the output would overwrite an input image"
    if case == "output exists":
        _png(out)
        return ok, f"{out}: exists; pass --overwrite to replace it"
    if case == "output is a folder":
        (tmp / "outdir.png").mkdir()
        return [content, style, "-o", tmp / "outdir.png"], \
            f"{tmp}/outdir.png: is a folder; give an image file name"
    if case == "unknown extension":
        return [content, style, "-o", tmp / "out.xyz"], \
            f"{tmp}/out.xyz: unknown output extension '.xyz' (use one of .png, .jpg, .jpeg, " \
            f".webp, .tif, .tiff, .bmp)"
    if case == "no extension":
        return [content, style, "-o", tmp / "out"], \
            f"{tmp}/out: no file extension; use one of .png, .jpg, .jpeg, .webp, .tif, .tiff, .bmp"
    if case == "negative content weight":
        return ok + ["--content-weight", "-1"], "content weight must be a positive number, got -1.0"
    if case == "NaN content weight":
        return ok + ["--content-weight", "nan"], "content weight must be a positive number, got nan"
    if case == "infinite content weight":
        return ok + ["--content-weight", "inf"], "content weight must be a positive number, got inf"
    if case == "zero evaluations":
        return ok + ["--evaluations", "0"], "evaluations per scale must be at least 1, got 0"
    if case == "a negative budget":
        return ok + ["--evaluations", "5,-1"], "evaluations per scale must be at least 1, got -1"
    if case == "budgets for the wrong number of scales":
        return ok + ["--evaluations", "5,5,5"], "3 evaluation budgets given for 2 scales"
    if case == "evaluations not numbers":
        return ok + ["--evaluations", "ten"], "--evaluations must be integers separated by commas"
    if case == "zero samples":
        return ok + ["--samples", "0"], "samples must be at least 1"
    if case == "zero per round":
        return ok + ["--per-round", "0"], "per round must be at least 1"
    if case == "negative seed":
        return ok + ["--seed", "-1"], "seed must be 0 or more, got -1"
    if case == "unknown preset":
        return ok + ["--preset", "nope"], "unknown preset 'nope'; choose one of paper, strotss"
    if case == "unknown device":
        return ok + ["--device", "tpu"], "unknown device 'tpu'; choose auto, cpu or cuda"
    if case == "negative checkpoint interval":
        return ok + ["--checkpoint-every", "-1"], \
            "--checkpoint-every must be a number of at least 0, got -1.0"
    if case == "checkpoint folder is a file":
        (tmp / "ck").write_text("x")
        return ok + ["--checkpoint", tmp / "ck"], f"--checkpoint {tmp}/ck: is a file, not a folder"
    if case == "checkpoint folder holds an unfinished run":
        _checkpoint(tmp / "ck", content, style, Options(size=96), finished=False)
        return ok + ["--checkpoint", tmp / "ck"], (
            f"--checkpoint {tmp}/ck: holds an unfinished run (scale 2 of 2, 4 evaluations into "
            f"it); continue it with --resume {tmp}/ck, or pass --overwrite to start over")
    if case == "resume without a checkpoint":
        (tmp / "ck").mkdir()
        return ok + ["--resume", tmp / "ck"], \
            f"{tmp}/ck: no checkpoint to resume (checkpoint.npz is missing)"
    if case == "resume another run's checkpoint":
        _checkpoint(tmp / "ck", content, style, Options(size=96, seed=3), finished=False)
        return ok + ["--resume", tmp / "ck"], (
            f"{tmp}/ck: the checkpoint is of another run, made with seed 3 (now 0); rerun "
            f"with the same inputs and options, or start over without --resume")
    if case == "resume with another content image":
        _checkpoint(tmp / "ck", _png(tmp / "other.png", (90, 60)), style, Options(size=96),
                    finished=False)
        return ok + ["--resume", tmp / "ck"], \
            f"{tmp}/ck: the checkpoint is of another run, made with a different content image;"
    if case == "damaged checkpoint":
        (tmp / "ck").mkdir()
        (tmp / "ck" / "checkpoint.npz").write_bytes(b"garbage")
        return ok + ["--resume", tmp / "ck"], (
            f"{tmp}/ck/checkpoint.npz: the checkpoint cannot be resumed: it is damaged, or not "
            f"written by ostransfer; to start over, use --checkpoint {tmp}/ck --overwrite "
            f"instead of --resume")
    if case == "checkpoint folder holds a damaged checkpoint":
        (tmp / "ck").mkdir()
        (tmp / "ck" / "checkpoint.npz").write_bytes(b"PK\x03\x04 damaged")
        return ok + ["--checkpoint", tmp / "ck"], (
            f"--checkpoint {tmp}/ck: holds a checkpoint that cannot be resumed (it is damaged, "
            f"or not written by ostransfer); pass --overwrite to start over there")
    if case == "output ends in a slash":
        return [content, style, "-o", f"{tmp}/new.png/"], \
            f"{tmp}/new.png/: ends in a slash, which names a folder; give an image file name"
    if case == "output ends in a dot":
        return [content, style, "-o", f"{tmp}/new.png/."], \
            f"{tmp}/new.png/.: names a folder; give an image file name"
    if case == "output name too long":
        name = "n" * (name_limit(tmp) - 3) + ".png"
        return [content, style, "-o", tmp / name], (
            f"{tmp}/{name}: the file name is {len(name)} bytes long; this file system takes at "
            f"most {name_limit(tmp)}")
    if case == "output is a link to nothing":
        out.symlink_to(tmp / "nowhere.png")
        return ok, f"{out}: exists (a symbolic link to nothing); pass --overwrite to replace it"
    if case == "budgets for one scale":
        return ok + ["--size", "32", "--evaluations", "5,5"], \
            "2 evaluation budgets given for 1 scale"
    if case.startswith("guide:"):
        return _guide_case(tmp, case[len("guide:"):].strip(), content, style, out)
    raise AssertionError(case)


def _two_colours(path: Path, size, left=(0, 160, 0), right=(255, 255, 0)) -> Path:
    guide = Image.new("RGB", size, right)
    guide.paste(left, (0, 0, size[0] // 2, size[1]))
    guide.save(path)
    return path


def _guide_case(tmp: Path, case: str, content: Path, style: Path, out: Path) -> tuple[list, str]:
    """Bad guides, style lists and colour options (issue 5)."""
    cg, sg = _two_colours(tmp / "cg.png", (96, 64)), _two_colours(tmp / "sg.jpg", (64, 64))
    ok = [content, style, "-o", out]
    if case == "only a content guide":
        return ok + ["--content-guide", cg], \
            "--content-guide needs --style-guide too (a guide for each image)"
    if case == "only a style guide":
        return ok + ["--style-guide", sg], \
            "--style-guide needs --content-guide too (a guide for each image)"
    if case == "guides that do not pair":
        _two_colours(sg, (64, 64), left=(0, 0, 255))
        return ok + ["--content-guide", cg, "--style-guide", sg], (
            f"{cg} and {sg}: guides do not pair up: content guide colours #00a000 have no match "
            f"in the style guide; style guide colours #0")
    if case == "missing guide":
        return ok + ["--content-guide", tmp / "nope.png", "--style-guide", sg], \
            f"{tmp}/nope.png: no such file"
    if case == "guide not an image":
        sg.write_text("not a picture")
        return ok + ["--content-guide", cg, "--style-guide", sg], \
            f"{sg}: not an image file Pillow can read"
    if case == "guide of another shape":
        _two_colours(cg, (64, 64))
        return ok + ["--content-guide", cg, "--style-guide", sg], (
            f"--content-guide {cg}: the guide is 64x64 px and the content image 96x64 px; a "
            f"guide must have its image's aspect ratio")
    if case == "guides with two styles":
        return [content, style, style, "-o", out, "--content-guide", cg, "--style-guide", sg], \
            "region guides work with one style image, got 2"
    if case == "output is a guide":
        return ok[:-1] + [cg, "--overwrite", "--content-guide", cg, "--style-guide", sg], \
            f"{cg}: the output would overwrite an input image"
    if case == "style weights for the wrong number of styles":
        return ok + ["--style-weight", "0.7,0.3"], "--style-weight has 2 values for 1 style image"
    if case == "negative style weight":
        return [content, style, style, "-o", out, "--style-weight", "1,-1"], \
            "--style-weight must be positive numbers, got -1.0"
    if case == "style weight not a number":
        return [content, style, style, "-o", out, "--style-weight", "a,b"], \
            "--style-weight must be numbers separated by commas"
    if case == "unknown colour method":
        return ok + ["--preserve-color", "--color-method", "sepia"], \
            "unknown --color-method 'sepia'; choose luminance or statistics"
    if case == "colour method without --preserve-color":
        return ok + ["--color-method", "statistics"], "--color-method needs --preserve-color"
    if case == "a second style that is missing":
        return [content, style, tmp / "gone.png", "-o", out], f"{tmp}/gone.png: no such file"
    if case == "resume with another style mix":
        _checkpoint(tmp / "ck", content, [style, style], Options(size=96, style_weights=(1, 3)),
                    finished=False)
        return [content, style, style, "-o", out, "--style-weight", "1,1", "--resume",
                tmp / "ck"], (f"{tmp}/ck: the checkpoint is of another run, made with "
                              f"style-weights 0.25,0.75 (now none)")
    if case == "resume without the guides":
        _checkpoint(tmp / "ck", content, style, Options(size=96), finished=False,
                    guides=(load_pil(cg), load_pil(sg)))
        return ok + ["--resume", tmp / "ck"], \
            f"{tmp}/ck: the checkpoint is of another run, made with a content guide (now none)"
    raise AssertionError(case)


def _checkpoint(folder: Path, content: Path, style: Path | list[Path], options: Options,
                finished: bool, guides=None):
    styles = [load_pil(s) for s in style] if isinstance(style, list) else load_pil(style)
    identity = ckpt.identity(load_pil(content), styles, options, guides=guides)
    image = np.zeros((64, 96, 3), np.float32)
    state = ckpt.RunState(1, 2, 4, image, {"x": image}, scales=2)
    if finished:
        state = ckpt.RunState(2, 0, 0, image, {}, scales=2, complete=True)
    ckpt.Checkpointer(folder, identity).save(state)


BAD_INPUTS = [
    "missing content", "content is a folder", "unreadable content", "empty file", "not an image",
    "truncated PNG", "truncated JPEG", "corrupt PNG data", "tiny content", "1x1 style",
    "too thin at the final scale", "absurd size for the memory", "memory budget not a size",
    "tile not a multiple of 16", "size over the limit",
    "output folder missing", "output folder not writable", "output is the content",
    "output is a hard link to the style", "output exists", "output is a folder",
    "unknown extension", "no extension", "negative content weight", "NaN content weight",
    "infinite content weight", "zero evaluations", "a negative budget",
    "budgets for the wrong number of scales", "evaluations not numbers", "zero samples",
    "zero per round", "negative seed", "unknown preset", "unknown device",
    "negative checkpoint interval", "checkpoint folder is a file",
    "checkpoint folder holds an unfinished run", "resume without a checkpoint",
    "resume another run's checkpoint", "resume with another content image", "damaged checkpoint",
    "checkpoint folder holds a damaged checkpoint", "output ends in a slash", "output ends in a dot",
    "output name too long", "output is a link to nothing", "budgets for one scale",
    *(f"guide: {case}" for case in (
        "only a content guide", "only a style guide", "guides that do not pair", "missing guide",
        "guide not an image", "guide of another shape", "guides with two styles",
        "output is a guide", "style weights for the wrong number of styles",
        "negative style weight", "style weight not a number", "unknown colour method",
        "colour method without --preserve-color",
        "a second style that is missing", "resume with another style mix",
        "resume without the guides")),
]


@pytest.fixture
def no_model(monkeypatch):
    """Validation must finish before the model is loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")
    monkeypatch.setattr(transfer, "Stylizer", refuse)
    monkeypatch.setenv("OSTRANSFER_MAX_MEMORY", "16G")  # the same refusals on any machine


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(tmp_path, no_model, case):
    if case == "unreadable content" and os.geteuid() == 0:
        pytest.skip("root reads every file")
    args, message = _setup(tmp_path, case)
    before = tree(tmp_path)
    result = invoke("stylize", *args, *([] if "--size" in args else ["--size", "96"]))
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith(message), line
    if case == "budgets for one scale":
        assert line == message  # not "1 scales"
    assert tree(tmp_path) == before
    if case == "absurd size for the memory":
        # at most the 16 GiB cap the test sets (less when the machine has less free)
        found = re.search(r"and ([0-9.]+) GiB is available; the largest size that fits is \d+ px", line)
        assert found and float(found.group(1)) <= 16.0, line


def test_sweep_refuses_bad_weights(tmp_path, no_model):
    for weights, message in [("1,-2", "--weights must be positive numbers, got -2.0"),
                             ("nan", "--weights must be positive numbers, got nan"),
                             ("a,b", "--weights must be numbers separated by commas")]:
        result = invoke("sweep", CONTENT, STYLE, "-o", tmp_path / "grid.png", "--weights", weights)
        assert result.exit_code == 2 and one_error_line(result).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_decompression_bombs_are_refused(tmp_path, no_model, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 96 x 64 = 6144 px > twice the limit
    content = _png(tmp_path / "c.png")
    result = invoke("stylize", content, STYLE, "-o", tmp_path / "out.png")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"{content}: refused, too many pixels to decode")


# -- signals ------------------------------------------------------------------------------

def test_first_signal_stops_at_the_next_evaluation_a_second_at_once():
    handler = signal.getsignal(signal.SIGINT)
    with common.StopSignals() as signals:
        signals.check()  # nothing received: carry on
        os.kill(os.getpid(), signal.SIGINT)  # e.g. while ONNX Runtime runs: only noted
        with pytest.raises(common.Stop):
            signals.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        signals.shield = True  # while the result is written: noted, never raised
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) == handler


def test_ctrl_c_before_the_run_writes_nothing(tmp_path, monkeypatch):
    def loading(device):
        raise KeyboardInterrupt
    monkeypatch.setattr(transfer, "Stylizer", loading)
    result = invoke("stylize", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", "40")
    assert result.exit_code == 130
    assert one_error_line(result) == "interrupted; nothing was written"
    assert list(tmp_path.iterdir()) == []


# -- real runs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(model_dir):
    from ostransfer.run.stylizer import Stylizer

    return Stylizer(device="cpu")


@pytest.fixture
def model(loaded, monkeypatch):
    """The CLI loads the model once per process; these in-process runs share one."""
    monkeypatch.setattr(transfer, "Stylizer", lambda device: loaded)

def test_same_seed_same_bytes_and_overwrite_only_when_asked(tmp_path, model_dir, model):
    args = [CONTENT, STYLE, "--size", "40", "--evaluations", "2", *FAST]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert invoke("stylize", *args, "-o", a).exit_code == 0
    assert invoke("stylize", *args, "-o", b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert Image.open(a).size == (40, 27)
    refused = invoke("stylize", *args, "-o", a, "--seed", "1")
    assert refused.exit_code == 2 and "exists; pass --overwrite" in one_error_line(refused)
    assert a.read_bytes() == b.read_bytes()
    assert invoke("stylize", *args, "-o", a, "--seed", "1", "--overwrite").exit_code == 0
    assert a.read_bytes() != b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporaries


def _send_at(monkeypatch, evaluation: int, signum: int):
    """Send `signum` to this process when the display shows `evaluation`."""
    shown = progress.ProgressDisplay.__call__

    def display(self, p):
        shown(self, p)
        if p.evaluation == evaluation:
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(progress.ProgressDisplay, "__call__", display)


def test_sigterm_stops_at_the_next_evaluation_and_saves_the_best_image(tmp_path, model,
                                                                       monkeypatch):
    _send_at(monkeypatch, 2, signal.SIGTERM)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out.jpg"
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "50",
                    *FAST)
    assert result.exit_code == 130
    partial = tmp_path / "out.interrupted-40px.jpg"
    assert result.stderr.strip().endswith(f"interrupted: the best image so far (40 px scale) "
                                          f"is in {partial}")
    assert Image.open(partial).size == (40, 27) and not out.exists()
    assert signal.getsignal(signal.SIGTERM) == handler  # restored


def test_a_non_finite_loss_names_the_term_and_keeps_the_last_good_image(tmp_path, model,
                                                                        monkeypatch):
    from ostransfer.method import objective

    real, calls = objective.losses.total_loss, []

    def poisoned(*args, **kwargs):
        value, grad, terms = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            terms = dict(terms, remd=float("nan"))
        return value, grad, terms

    monkeypatch.setattr(objective.losses, "total_loss", poisoned)
    out = tmp_path / "out.png"
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "5",
                    *FAST)
    assert result.exit_code == 1
    line = one_error_line(result)
    kept = tmp_path / "out.failed-40px.png"
    assert line.startswith("the loss is not finite at the 40 px scale: at evaluation 3 the "
                           "remd term is nan (content ")
    assert line.endswith(f"the best image so far (40 px scale) is in {kept}")
    assert Image.open(kept).size == (40, 27) and not out.exists()


def test_a_full_disk_at_the_end_leaves_no_partial_file_and_rescues_the_result(
        tmp_path, model, monkeypatch):
    out_dir, rescue_dir = tmp_path / "full", tmp_path / "tmp"
    out_dir.mkdir()
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if os.readlink(f"/proc/self/fd/{fp.fileno()}").startswith(str(out_dir)):  # disk full
            fp.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = out_dir / "out.png"
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "2",
                    *FAST)
    assert result.exit_code == 1
    assert one_error_line(result) == (f"{out}: cannot write (No space left on device); the "
                                      f"result was saved to {rescue_dir}/out.png instead")
    assert list(out_dir.iterdir()) == []  # no partial file
    assert Image.open(rescue_dir / "out.png").size == (40, 27)


def test_a_finished_checkpoint_writes_the_result_again(tmp_path, no_model):
    content, style = _png(tmp_path / "c.png"), _png(tmp_path / "s.png", (64, 64))
    _checkpoint(tmp_path / "ck", content, style, Options(size=96), finished=True)
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, "--size", "96", "--resume",
                    tmp_path / "ck")
    assert result.exit_code == 0, result.output
    assert "holds the finished run" in result.stderr and Image.open(out).size == (96, 64)


# -- a real SIGINT to a real process, then --resume ----------------------------------------

def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no checkpoint appeared"
        time.sleep(0.02)


def test_sigint_saves_the_best_image_exits_130_and_resume_matches(tmp_path, model_dir, model):
    args = [str(a) for a in (CONTENT, STYLE, "--size", "40", "--evaluations", "6", *FAST,
                             "--seed", "4")]
    out, folder = tmp_path / "out.png", tmp_path / "ck"
    env = dict(os.environ, OSTRANSFER_MODELS=str(model_dir))
    proc = subprocess.Popen([sys.executable, "-m", "ostransfer.cli", "stylize", *args,
                             "-o", str(out), "--checkpoint", str(folder),
                             "--checkpoint-every", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(folder / "checkpoint.npz", proc)  # the first round is done
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    partial = tmp_path / "out.interrupted-40px.png"
    # the interrupt writes the last round boundary's state; what came after it is redone
    said = re.search(r"interrupted: the best image so far \(40 px scale\) is in (.+); continue "
                     r"with --resume (.+?)(?: \(the last (\d+) evaluations?, since the last round "
                     r"boundary, are done again\))?$", stderr.strip())
    assert said and said.group(1, 2) == (str(partial), str(folder)), stderr
    assert "Traceback" not in stderr and not out.exists()
    assert Image.open(partial).size == (40, 27)
    _, state = ckpt.read(folder)
    assert state.scale == 0 and state.rounds >= 1 and state.evaluations < 6
    assert not state.complete
    if said.group(3):
        assert 0 < int(said.group(3)) < 6 - state.evaluations + 1

    resumed = invoke("stylize", *args, "-o", out, "--resume", folder)
    assert resumed.exit_code == 0, resumed.output
    reference = tmp_path / "reference.png"
    assert invoke("stylize", *args, "-o", reference).exit_code == 0
    assert out.read_bytes() == reference.read_bytes()
    assert ckpt.read(folder)[1].complete
    shutil.rmtree(folder)


# -- Ctrl-C while the command line loads -----------------------------------------------------

SLOW_TYPER = """
import importlib, pathlib, sys, time
here = str(pathlib.Path(__file__).resolve().parent.parent)
pathlib.Path(here, "loading").touch()  # the command line's imports are under way
time.sleep(30)
sys.path.remove(here)
del sys.modules["typer"]
sys.modules["typer"] = importlib.import_module("typer")
"""


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(tmp_path):
    """A typer that takes 30 s to import (first on the path) holds the process inside the
    command line's imports, where the signal is sent: whatever the machine's speed."""
    (tmp_path / "typer").mkdir()
    (tmp_path / "typer" / "__init__.py").write_text(SLOW_TYPER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # as from a shell: SIGINT at its default (a test before this one may leave it ignored,
    # and an ignored signal stays ignored across exec)
    proc = subprocess.Popen([sys.executable, "-m", "ostransfer", "--help"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 60
        while not (tmp_path / "loading").exists():
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err, out) == (130, "error: interrupted; nothing was written\n", "")


# -- a result never replaces a file without --overwrite, nor is lost -------------------------

def _appear_at(monkeypatch, evaluation: int, make) -> None:
    """Call ``make()`` when the display shows ``evaluation`` (mid-run)."""
    shown = progress.ProgressDisplay.__call__

    def display(self, p):
        shown(self, p)
        if p.evaluation == evaluation:
            make()
    monkeypatch.setattr(progress.ProgressDisplay, "__call__", display)


@pytest.mark.parametrize("what", ["file", "link to nothing"])
def test_a_file_that_appears_during_the_run_is_kept_and_the_result_rescued(
        tmp_path, model, monkeypatch, what):
    out = tmp_path / "out.png"
    if what == "file":
        _appear_at(monkeypatch, 1, lambda: out.write_bytes(b"theirs"))
    else:
        _appear_at(monkeypatch, 1, lambda: out.symlink_to(tmp_path / "nowhere.png"))
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "2",
                    *FAST)
    assert result.exit_code == 1
    rescue = tmp_path / "out.new.png"
    assert one_error_line(result) == (f"{out}: appeared during the run and was not replaced (no "
                                      f"--overwrite); the result was saved to {rescue} instead")
    assert Image.open(rescue).size == (40, 27)
    if what == "file":
        assert out.read_bytes() == b"theirs"
    else:
        assert out.is_symlink() and not (tmp_path / "nowhere.png").exists()
    assert tree(tmp_path) == {"out.png", "out.new.png"}


def test_with_overwrite_a_file_that_appears_during_the_run_is_replaced(tmp_path, model,
                                                                        monkeypatch):
    out = tmp_path / "out.png"
    _appear_at(monkeypatch, 1, lambda: out.write_bytes(b"theirs"))
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "2",
                    "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (40, 27) and tree(tmp_path) == {"out.png"}


SAVE_TOGETHER = """
import os, sys, time
from pathlib import Path
from ostransfer.cli import main, transfer
barrier, real = Path(sys.argv[1]), transfer.save_result
def save_result(*args, **kwargs):  # both runs are done: they save at the same moment
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.001)
    return real(*args, **kwargs)
transfer.save_result = save_result
sys.argv = ["ostransfer", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
def test_two_processes_saving_to_one_path_one_wins_the_other_keeps_its_result(
        tmp_path, model_dir, model):
    args = [str(a) for a in (CONTENT, STYLE, "--size", "32", "--evaluations", "2", *FAST)]
    out, barrier = tmp_path / "same.png", tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, OSTRANSFER_MODELS=str(model_dir))
    procs = [subprocess.Popen([sys.executable, "-c", SAVE_TOGETHER, str(barrier), "stylize",
                               *args, "--seed", str(seed), "-o", str(out)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2)]
    try:
        results = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    references = {}
    for seed in (1, 2):  # what each process computed (the same seed gives the same bytes)
        references[seed] = tmp_path / f"reference-{seed}.png"
        assert invoke("stylize", *args, "--seed", seed, "-o", references[seed]).exit_code == 0
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    winner = 1 + [code for code, _ in results].index(0)
    loser = 3 - winner
    rescue = tmp_path / "same.new.png"
    assert results[winner - 1][1] == ""
    assert results[loser - 1][1] == (f"error: {out}: appeared during the run and was not "
                                     f"replaced (no --overwrite); the result was saved to "
                                     f"{rescue} instead\n")
    assert out.read_bytes() == references[winner].read_bytes()
    assert rescue.read_bytes() == references[loser].read_bytes()
    assert tree(tmp_path) == {"barrier", *(f"barrier/{p.pid}" for p in procs), "same.png",
                              "same.new.png", "reference-1.png", "reference-2.png"}


# -- long names, stale partial files, damaged checkpoints -----------------------------------

def test_a_long_output_name_is_saved_and_so_are_its_rescue_names(tmp_path, model, monkeypatch):
    limit = name_limit(tmp_path)
    out = tmp_path / ("n" * (min(limit, 255) - 5) + ".png")  # 250 bytes: temp names 18 longer
    args = [CONTENT, STYLE, "--size", "40", "--evaluations", "2", *FAST]
    result = invoke("stylize", *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (40, 27) and tree(tmp_path) == {out.name}
    _send_at(monkeypatch, 2, signal.SIGTERM)  # a stopped run: the best image's longer name
    stopped = tmp_path / ("s" * (min(limit, 255) - 5) + ".png")
    result = invoke("stylize", CONTENT, STYLE, "-o", stopped, "--size", "40", "--evaluations",
                    "50", *FAST)
    assert result.exit_code == 130
    kept = outputs.tagged(stopped, "interrupted-40px")
    assert len(kept.name.encode()) <= limit and kept.name.endswith("s.interrupted-40px.png")
    assert result.stderr.strip().endswith(f"is in {kept}") and Image.open(kept).size == (40, 27)


def test_the_next_run_removes_what_a_save_killed_by_sigkill_left(tmp_path, model, hang_in_save):
    out, ready = tmp_path / "out.png", tmp_path / "ready"
    proc = hang_in_save(out, ready)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ready.unlink()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.png.") and left[0].endswith(".partial")
    result = invoke("stylize", CONTENT, STYLE, "-o", out, "--size", "40", "--evaluations", "2",
                    *FAST)
    assert result.exit_code == 0, result.output
    assert tree(tmp_path) == {"out.png"}


def test_a_damaged_checkpoint_is_named_and_overwrite_starts_over(tmp_path, model):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(b"garbage")
    args = [CONTENT, STYLE, "--size", "40", "--evaluations", "2", *FAST]
    refused = invoke("stylize", *args, "-o", tmp_path / "out.png", "--checkpoint", folder)
    assert refused.exit_code == 2
    assert "holds a checkpoint that cannot be resumed (it is damaged" in one_error_line(refused)
    assert "--resume" not in one_error_line(refused)
    result = invoke("stylize", *args, "-o", tmp_path / "out.png", "--checkpoint", folder,
                    "--overwrite")
    assert result.exit_code == 0, result.output
    assert ckpt.read(folder)[1].complete


def test_progress_shows_evaluations_per_minute_and_the_scale_time_left():
    from rich.console import Console

    from ostransfer.run.plan import Scale
    from ostransfer.run.stylizer import Progress

    plan = [Scale(0, 64, (64, 43), (64, 40), 8.0, 10), Scale(1, 128, (128, 85), (128, 80), 4.0, 5)]
    display = progress.ProgressDisplay(plan, Console(file=open(os.devnull, "w")), enabled=False)

    def at(scale, evaluation, elapsed):
        return display.rate(Progress(scale, 2, plan[scale].side, evaluation,
                                     plan[scale].budget, 1.0, {}, elapsed))

    assert at(0, 1, 5.0) == ""  # the first evaluation carries the scale's set-up
    assert at(0, 3, 9.0) == "30 evals/min, scale 14 s left"  # 2 in 4 s, 7 to go
    assert at(1, 1, 20.0) == ""  # a new scale starts a new count
    assert at(1, 2, 32.0) == "5 evals/min, scale 36 s left"


def test_a_large_run_checkpoints_by_default_continues_when_rerun_and_cleans_up(
        tmp_path, model, monkeypatch):
    """Above AUTO_CHECKPOINT_SIDE (lowered here to 32 px) a run saves its state in
    <stem>.checkpoint; a Ctrl-C (sent after its first write) leaves it there, the same command
    continues from it to the uninterrupted bytes and removes it; another run's state there is
    refused, --overwrite starts over, --no-checkpoint writes none."""
    monkeypatch.setattr(transfer, "AUTO_CHECKPOINT_SIDE", 32)
    args = [CONTENT, STYLE, "--size", "40", "--evaluations", "6", *FAST, "--seed", "4",
            "--checkpoint-every", "0"]
    reference = tmp_path / "reference.png"
    assert invoke("stylize", *args, "-o", reference, "--no-checkpoint").exit_code == 0
    assert tree(tmp_path) == {"reference.png"}

    out, folder = tmp_path / "out.png", tmp_path / "out.checkpoint"
    save = ckpt.Checkpointer.save

    def save_then_interrupt(self, state):
        written = save(self, state)
        if not state.complete and not getattr(self, "signalled", False):
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)
        return written

    monkeypatch.setattr(ckpt.Checkpointer, "save", save_then_interrupt)
    stopped = invoke("stylize", *args, "-o", out)
    assert stopped.exit_code == 130, stopped.output
    assert f"rerun the same command to continue (its state is in {folder})" in stopped.stderr
    assert not out.exists() and not ckpt.read(folder)[1].complete
    monkeypatch.setattr(ckpt.Checkpointer, "save", save)

    other = invoke("stylize", *args[:-4], "--seed", "5", *args[-2:], "-o", out)
    assert other.exit_code == 2
    assert one_error_line(other) == (f"{folder}: holds the checkpoint of another run, made with "
                                     f"seed 4 (now 5); pass --overwrite to start over there, "
                                     f"or --no-checkpoint")
    resumed = invoke("stylize", *[a for a in args if a != "-q"], "-o", out)
    assert resumed.exit_code == 0, resumed.output
    assert f"continuing the run saved in {folder}" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes() and not folder.exists()

    assert invoke("stylize", *args, "-o", out, "--overwrite").exit_code == 0
    assert out.read_bytes() == reference.read_bytes() and not folder.exists()
    contradiction = invoke("stylize", *args, "-o", out, "--no-checkpoint", "--checkpoint", folder)
    assert contradiction.exit_code == 2
    assert one_error_line(contradiction) == "--no-checkpoint contradicts --checkpoint and --resume"
