"""Never lose a run, never crash on bad input (library side): the image loader under fuzzing,
atomic saves on a full disk, non-finite losses, memory estimates and scale plans,
checkpoints, and resumed runs that end exactly like uninterrupted ones."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import signal
import subprocess
import sys

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ostransfer.files import (
    name_bytes,
    name_limit,
    partial_path,
    remove_stale_partials,
    sample_image,
    stale_partials,
)
from ostransfer.imaging.io import ImageError, SaveError, load_pil, save, to_pil
from ostransfer.method.lbfgs import lbfgs
from ostransfer.method.optimizer import NonFiniteError, Stop
from ostransfer.method.rmsprop import rmsprop
from ostransfer.run import checkpoint as ckpt
from ostransfer.run.options import MIN_SIDE, InputError, Options
from ostransfer.run.plan import (available_memory, estimate_memory, fit_to_memory, largest_size,
                                 plan_scales, preflight)
from ostransfer.run.stylizer import Interrupted, Stylizer, stream_rng

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(len(fmt))
    image = Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


ENCODED = {fmt: _encoded(fmt) for fmt in FORMATS}
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"\x00\x00\x01\x00"]


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "input"


@pytest.fixture
def small_bomb_limit(monkeypatch):
    # a header may claim any size: keep what a fuzzed file can make Pillow allocate small
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)


def _load_or_clear_error(path, data: bytes):
    """Only two outcomes are allowed: an RGB image, or an ImageError naming the file."""
    path.write_bytes(data)
    try:
        image = load_pil(path)
    except ImageError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return None
    assert image.mode == "RGB" and min(image.size) >= 1
    return image


FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=3000))
def test_fuzz_random_bytes_give_only_the_clear_error(fuzz_file, small_bomb_limit, data):
    _load_or_clear_error(fuzz_file, data)


@FUZZ
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=2000))
def test_fuzz_image_headers_with_random_bodies(fuzz_file, small_bomb_limit, magic, tail):
    _load_or_clear_error(fuzz_file, magic + tail)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_fuzz_truncated_images_give_the_clear_error(fuzz_file, small_bomb_limit, fmt, fraction):
    data = ENCODED[fmt]
    cut = int(fraction * len(data))
    image = _load_or_clear_error(fuzz_file, data[:cut])
    if image is not None:  # only the trailer was cut (e.g. PNG's IEND): the pixels are whole
        assert image.size == (32, 24)


@FUZZ
@given(fmt=st.sampled_from(FORMATS),
       edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_fuzz_corrupted_images_give_an_image_or_the_clear_error(fuzz_file, small_bomb_limit,
                                                                 fmt, edits):
    data = bytearray(ENCODED[fmt])
    for where, value in edits:
        data[int(where * len(data))] = value
    _load_or_clear_error(fuzz_file, bytes(data))


def test_loader_names_each_problem(tmp_path, monkeypatch):
    cases = {
        tmp_path / "missing.png": "no such file",
        tmp_path: "is a folder",
        tmp_path / "empty.png": "empty file (0 bytes)",
        tmp_path / "text.png": "not an image file Pillow can read",
        tmp_path / "cut.png": "corrupt or truncated image (image file is truncated)",
    }
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not a picture\n")
    (tmp_path / "cut.png").write_bytes(ENCODED["PNG"][: len(ENCODED["PNG"]) // 2])
    for path, message in cases.items():
        with pytest.raises(ImageError, match=f"^{path}: .*") as info:
            load_pil(path)
        assert message in str(info.value)
    with pytest.raises(ImageError, match="not a regular file"):
        load_pil("/dev/null")
    whole = tmp_path / "whole.png"
    whole.write_bytes(ENCODED["PNG"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 768 px > twice the limit
    with pytest.raises(ImageError, match="too many pixels to decode safely"):
        load_pil(whole)
    with pytest.raises(ImageError, match="zero size"):
        load_pil(np.zeros((0, 5, 3)))
    with pytest.raises(ImageError, match="numeric"):
        load_pil(np.array([["a"]]))


# -- atomic saves --------------------------------------------------------------------------

def _disk_full_after(nbytes: int):
    """A stand-in for Image.save that writes nbytes, then fails like a full disk."""
    def save(self, fp, format=None, **params):  # noqa: A002, ARG001 - Pillow's signature
        fp.write(b"\x89PNG" + b"\x00" * nbytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save


def test_a_full_disk_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    image = np.full((20, 30, 3), 0.25, np.float32)
    save(image, out)
    before = out.read_bytes()
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()  # not mkstemp's 0o600
    monkeypatch.setattr(Image.Image, "save", _disk_full_after(4096))
    with pytest.raises(SaveError) as info:
        save(np.zeros((20, 30, 3), np.float32), out)
    assert str(info.value) == f"{out}: cannot write (No space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert out.read_bytes() == before
    with pytest.raises(SaveError):
        save(image, tmp_path / "new.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- saves that never replace a file unless asked; partial files ----------------------------

@pytest.fixture(params=["hard links", "no hard links"])
def links(request, monkeypatch):
    """Both ways of publishing without replacing: a hard link, and where the file system has
    none (FAT, some network file systems) an exclusive empty file renamed over."""
    if request.param == "no hard links":
        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        monkeypatch.setattr(os, "link", no_link)
    return request.param


def test_a_save_without_replace_never_replaces_anything(tmp_path, links):
    image = np.full((8, 8, 3), 0.5, np.float32)
    taken, dangling = tmp_path / "taken.png", tmp_path / "dangling.png"
    taken.write_bytes(b"someone else's")
    dangling.symlink_to(tmp_path / "nowhere.png")
    for path in (taken, dangling):
        with pytest.raises(FileExistsError):
            save(image, path, replace=False)
    assert taken.read_bytes() == b"someone else's"
    assert dangling.is_symlink() and not (tmp_path / "nowhere.png").exists()
    new = save(image, tmp_path / "new.png", replace=False)
    assert load_pil(new).size == (8, 8) and (new.stat().st_mode & 0o777) == 0o666 & ~_umask()
    save(image, taken)  # replace=True (the default, and --overwrite) replaces atomically
    assert load_pil(taken).size == (8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.png", "new.png", "taken.png"]


RACE = """
import sys, time
from pathlib import Path
from ostransfer.files import write_atomic
target, barrier, me, racers = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(barrier / me).touch()
while len(list(barrier.iterdir())) < racers:
    time.sleep(0.001)
try:
    write_atomic(target, me.encode(), replace=False)
except FileExistsError:
    sys.exit(17)
"""


def test_processes_racing_to_publish_one_path_exactly_one_wins(tmp_path):
    (tmp_path / "barrier").mkdir()
    target, racers = tmp_path / "same.png", 6
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(target), str(tmp_path / "barrier"),
                               f"racer-{i}", str(racers)]) for i in range(racers)]
    codes = [proc.wait(timeout=120) for proc in procs]
    assert sorted(codes) == [0] + [17] * (racers - 1)
    assert target.read_bytes() == f"racer-{codes.index(0)}".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["barrier", "same.png"]  # no partials


@pytest.mark.parametrize("stem", ["n" * 251, "é" * 125 + "x"])  # 255 bytes with ".png"
def test_partial_names_fit_the_name_limit(tmp_path, stem):
    limit = name_limit(tmp_path)
    if limit < 255:
        pytest.skip(f"this file system takes names of {limit} bytes")
    out = tmp_path / f"{stem}.png"
    assert name_bytes(out.name) == 255
    partial = partial_path(out)
    assert name_bytes(partial.name) <= limit and partial.name.startswith(".")
    assert partial.parent == tmp_path and partial.name.endswith(".partial")
    save(np.zeros((4, 4, 3), np.float32), out, replace=False)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_partial_files_of_killed_saves_are_found_and_removed(tmp_path, hang_in_save):
    out, other = tmp_path / "out.png", tmp_path / "other.png"
    killed = hang_in_save(out, tmp_path / "ready-1")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    alive = hang_in_save(out, tmp_path / "ready-2")  # still saving: its partial is not stale
    try:
        gone = hang_in_save(other, tmp_path / "ready-3")  # another output's: left alone
        gone.kill()
        gone.wait()
        partials = sorted(p for p in tmp_path.iterdir() if p.name.endswith(".partial"))
        assert len(partials) == 3
        stale = [p for p in partials if f".{killed.pid}-" in p.name]
        assert stale and stale[0].name.startswith(".out.png.")
        assert stale_partials(out) == stale
        assert remove_stale_partials(out) == stale and not stale[0].exists()
        assert len([p for p in tmp_path.iterdir() if p.name.endswith(".partial")]) == 2
        assert stale_partials(out) == []
    finally:
        alive.kill()
        alive.wait()
    assert len(stale_partials(out)) == 1  # now that its writer is gone


# -- non-finite losses ---------------------------------------------------------------------

class _Quadratic:
    """loss = |x - 0.3|^2 with a term dict; evaluation `bad_at` goes wrong in `how`."""

    def __init__(self, bad_at: int, how: str):
        self.bad_at, self.how, self.calls = bad_at, how, 0

    def resample(self, rng) -> None:
        pass

    def __call__(self, image):
        self.calls += 1
        value = float(((image - 0.3) ** 2).sum())
        grad = (2 * (image - 0.3)).astype(np.float32)
        terms = {"content": value, "remd": 0.5, "moment": 1.0, "palette": 0.1}
        if self.calls == self.bad_at:
            if self.how == "term":
                terms["remd"], value = math.nan, math.nan
            elif self.how == "total":
                value = math.inf
            else:
                grad = grad.copy()
                grad[1, 2, 0] = math.nan
        return value, grad, terms


@pytest.mark.parametrize("optimizer", ["lbfgs", "rmsprop"])
@pytest.mark.parametrize("how,term,message", [
    ("term", "remd", r"the remd term is nan \(content"),
    ("total", "total", "the total loss is inf though every term is finite"),
    ("gradient", "gradient", "the gradient has 1 non-finite values though the loss"),
])
def test_a_non_finite_evaluation_stops_with_its_name(optimizer, how, term, message):
    objective = _Quadratic(bad_at=4, how=how)
    steps = []
    start = np.full((8, 8, 3), 0.9, np.float32)
    with pytest.raises(NonFiniteError, match=message) as info:
        if optimizer == "lbfgs":
            lbfgs(objective, start, 10, 5, np.random.default_rng(0), steps.append)
        else:
            rmsprop(objective, start, 10, np.random.default_rng(0), callback=steps.append)
    assert info.value.term == term and info.value.evaluation == 4
    assert "at evaluation 4" in str(info.value)
    # the bad point never reached the callback: the best image so far is a good one
    assert [s.evaluation for s in steps] == [1, 2, 3]
    assert all(np.isfinite(s.loss) and np.isfinite(s.image).all() for s in steps)


# -- plans and memory ----------------------------------------------------------------------

def test_tiny_and_thin_images_are_planned_or_refused():
    opts = Options(size=512)
    with pytest.raises(InputError, match=r"^content image: the image is 12x40 px; VGG16 needs"):
        plan_scales((12, 40), (100, 100), opts)
    with pytest.raises(InputError, match="style.png: the image is 600x15 px"):
        plan_scales((100, 100), (600, 15), opts, names=("c.png", "style.png"))
    # a 5:1 panorama: 64 px would give 64x13, so the run starts at 128 px
    plan = plan_scales((1000, 200), (300, 300), opts)
    assert [s.side for s in plan] == [128, 256, 512]
    assert [s.index for s in plan] == [1, 2, 3]
    final = opts.weight  # the weight at 512 px: 4, 2, 1 times it at 128, 256, 512 px
    assert [s.weight for s in plan] == [4 * final, 2 * final, final]
    assert all(min(s.content_size) >= MIN_SIDE for s in plan)
    # a thin style is enlarged where it would be too thin (it is only sampled)
    plan = plan_scales((300, 200), (1000, 100), opts)
    assert plan[0].style_size[1] >= MIN_SIDE and plan[-1].style_size == (512, 51)
    with pytest.raises(InputError, match="at size 64 the output would be 64x6 px") as info:
        plan_scales((1000, 100), (300, 300), Options(size=64))
    least = int(re.search(r"use a size of at least (\d+)$", str(info.value))[1])
    assert plan_scales((1000, 100), (300, 300), Options(size=least))[-1].content_size[1] == 16
    with pytest.raises(InputError):
        plan_scales((1000, 100), (300, 300), Options(size=least - 1))


def test_memory_estimate_is_calibrated_and_monotonic():
    def estimate(size):
        opts = Options(size=size)
        return estimate_memory(plan_scales((size, size), (size, size), opts), opts) / 1e9

    # measured peak RSS (GB) of these runs: 0.68, 0.93, 1.54, 2.21, 4.73; the estimate may
    # be somewhat above a measurement, never below it
    for size, measured in [(128, 0.68), (256, 0.93), (384, 1.54), (512, 2.21), (768, 4.73)]:
        assert measured <= estimate(size) <= 1.4 * measured
    sizes = [64, 100, 512, 1000, 2048, 4096]
    assert all(a < b for a, b in zip(map(estimate, sizes), map(estimate, sizes[1:])))


def test_too_large_runs_are_refused_with_the_estimate_and_the_size_that_fits(monkeypatch):
    monkeypatch.setenv("OSTRANSFER_MAX_MEMORY", "3G")
    assert available_memory() <= 3 * 2**30
    opts = Options(size=4096)
    with pytest.raises(InputError) as info:
        preflight((1200, 800), (640, 640), opts)
    message = str(info.value)
    best = largest_size((1200, 800), (640, 640), opts, 3 * 2**30)
    assert re.fullmatch(rf"a 4096 px run needs about \d+\.\d GiB of memory and 3\.0 GiB is "
                        rf"available; the largest size that fits is {best} px", message)
    fits = fit_to_memory((1200, 800), (640, 640), Options(size=best))
    assert fits.tile is not None  # the largest size that fits does so in tiles
    preflight((1200, 800), (640, 640), fits)
    bigger = fit_to_memory((1200, 800), (640, 640), Options(size=best + 1))
    assert estimate_memory(plan_scales((1200, 800), (640, 640), bigger), bigger) > 3 * 2**30
    monkeypatch.setenv("OSTRANSFER_MAX_MEMORY", "lots")
    with pytest.raises(InputError, match="OSTRANSFER_MAX_MEMORY='lots' is not a size"):
        available_memory()


def test_tiles_are_chosen_only_when_whole_images_do_not_fit():
    size = (2048, 1536)

    def need(opts):
        return estimate_memory(plan_scales(size, size, opts), opts)

    small = Options(size=512)
    assert fit_to_memory(size, size, small, max_memory=need(small)) is small
    whole = Options(size=2048)
    assert fit_to_memory(size, size, whole, device="cuda", max_memory=2**30) is whole
    fitted = fit_to_memory(size, size, whole, max_memory=4 * 2**30)
    assert fitted.tile is not None and fitted.tile % 16 == 0
    assert need(fitted) <= 4 * 2**30 < need(replace(fitted, tile=fitted.tile + 16))
    assert fitted.tile < fit_to_memory(size, size, whole, max_memory=6 * 2**30).tile
    # a tile the user chose is kept; below one that fits nothing, preflight says so
    chosen = Options(size=2048, tile=256)
    assert fit_to_memory(size, size, chosen, max_memory=2**20) is chosen
    with pytest.raises(InputError, match=r"in tiles of 256 px and 1 MiB is available"):
        preflight(size, size, chosen, max_memory=2**20)
    with pytest.raises(ValueError, match="tile must be a multiple of 16 px, got 100"):
        Options(tile=100).validated()


def test_random_streams_depend_only_on_seed_scale_and_round():
    a = stream_rng(3, 2, 5).integers(0, 10**9, 4)
    assert np.array_equal(a, stream_rng(3, 2, 5).integers(0, 10**9, 4))
    others = [stream_rng(4, 2, 5), stream_rng(3, 1, 5), stream_rng(3, 2, 4)]
    assert all(not np.array_equal(a, g.integers(0, 10**9, 4)) for g in others)


# -- checkpoints ---------------------------------------------------------------------------

def _identity(seed=0):
    content = Image.new("RGB", (40, 30), (200, 10, 10))
    style = Image.new("RGB", (30, 30), (10, 10, 200))
    return ckpt.identity(content, style, Options(size=64, seed=seed))


def test_checkpoint_round_trip_and_refusals(tmp_path):
    identity = _identity()
    saver = ckpt.Checkpointer(tmp_path, identity, every=0)
    x = np.random.default_rng(0).random((30, 40, 3), dtype=np.float32)
    state = ckpt.RunState(1, 2, 40, x[::2, ::2], {"x": x}, scales=3)
    assert saver.save(state)
    loaded = ckpt.load(tmp_path, identity)
    assert (loaded.scale, loaded.rounds, loaded.evaluations, loaded.scales) == (1, 2, 40, 3)
    assert np.array_equal(loaded.optimizer["x"], x) and np.array_equal(loaded.result, x[::2, ::2])
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    with pytest.raises(ckpt.CheckpointError, match=r"another run, made with seed 0 \(now 1\)"):
        ckpt.load(tmp_path, _identity(seed=1))
    other = dict(identity, content="0" * 64)
    with pytest.raises(ckpt.CheckpointError, match="made with a different content image"):
        ckpt.load(tmp_path, other)
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(ckpt.UnreadableCheckpoint, match="cannot be resumed: it is damaged") \
            as info:
        ckpt.load(tmp_path, identity)
    assert info.value.reason.startswith("damaged")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint to resume"):
        ckpt.load(tmp_path / "nothing", identity)


def test_a_checkpoint_write_killed_in_an_earlier_run_is_cleaned_up(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint.npz.{dead.pid}-0123abcd.partial"
    live = tmp_path / f".checkpoint.npz.{os.getpid()}-0123abcd.partial"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    ckpt.Checkpointer(tmp_path, _identity())
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_a_failed_checkpoint_write_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    warnings = []
    saver = ckpt.Checkpointer(tmp_path, _identity(), every=0, warn=warnings.append)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "write_atomic", full)
    assert not saver.save(ckpt.RunState(scales=2))
    assert warnings == [f"could not write the checkpoint in {tmp_path} (No space left on "
                        f"device); the run goes on"]
    assert list(tmp_path.iterdir()) == []


# -- resumed runs end exactly like uninterrupted ones ---------------------------------------

RUN = dict(size=80, samples=64, style_samples=100, per_round=2, seed=5,
           evaluations=[1, 3])  # scales 64 and 80 px
RMSPROP = dict(RUN, size=32, optimizer="rmsprop", evaluations=3)  # one 32 px scale
MLBFGS = dict(RUN, optimizer="mlbfgs", per_round=1, evaluations=[2, 8])


@pytest.fixture(scope="module")
def stylizer(model_dir):
    return Stylizer(device="cpu")


@pytest.fixture(scope="module")
def inputs():
    return load_pil(CONTENT), load_pil(STYLE)


@pytest.fixture(scope="module")
def uninterrupted(stylizer, inputs):
    cache = {}

    def result(options: dict) -> np.ndarray:
        key = repr(sorted(options.items()))
        if key not in cache:
            cache[key] = stylizer.run(*inputs, Options(**options))
        return cache[key]
    return result


def _stop_at(scale: int, evaluation: int):
    def progress(p):
        if (p.scale, p.evaluation) == (scale, evaluation):
            raise Stop
    return progress


@pytest.mark.parametrize("options,stop,every,where", [
    # L-BFGS-B stopped mid-round in the second scale: continues from the round boundary
    (RUN, (1, 3), 0.0, (1, 1, 2)),
    # only scale-end checkpoints: continues from the start of the second scale
    (RUN, (1, 1), 1e9, (1, 0, 0)),
    # no round checkpoint due: the interrupt writes the last round boundary's state
    (RUN, (1, 3), 1e9, (1, 1, 2)),
    # RMSprop (its pyramid and running averages are the state)
    (RMSPROP, (0, 3), 0.0, (0, 1, 2)),
    (RMSPROP, (0, 3), 1e9, (0, 1, 2)),
    # multi-batch L-BFGS (its coefficients and curvature pairs are the state)
    (MLBFGS, (1, 6), 1e9, (1, 2, 4)),
], ids=["lbfgs-mid-scale", "lbfgs-scale-boundary", "lbfgs-at-interrupt", "rmsprop-mid-scale",
        "rmsprop-at-interrupt", "mlbfgs-at-interrupt"])
def test_resume_ends_with_the_uninterrupted_result(stylizer, inputs, uninterrupted, tmp_path,
                                                   options, stop, every, where):
    opts = Options(**options)
    reference = uninterrupted(options)
    identity = ckpt.identity(*inputs, opts)
    with pytest.raises(Interrupted) as info:
        stylizer.run(*inputs, opts, _stop_at(*stop),
                     checkpoint=ckpt.Checkpointer(tmp_path, identity, every=every))
    saved = info.value.state
    assert (saved.scale, saved.rounds, saved.evaluations) == where
    assert info.value.lost == stop[1] - where[2]  # what the resumed run does again
    assert info.value.image is not None and max(info.value.image.shape) == info.value.side
    state = ckpt.load(tmp_path, identity)
    seen = []
    resumed = stylizer.run(*inputs, opts, seen.append, resume=state,
                           checkpoint=ckpt.Checkpointer(tmp_path, identity, every=every))
    assert (seen[0].scale, seen[0].evaluation) == (where[0], where[2] + 1)
    assert resumed.tobytes() == reference.tobytes()
    finished = ckpt.load(tmp_path, identity)
    assert finished.complete and finished.result.tobytes() == reference.tobytes()
    # a finished checkpoint gives the result again without evaluating anything
    assert stylizer.run(*inputs, opts, _stop_at(0, 1), resume=finished).tobytes() == \
        reference.tobytes()
    again = stylizer.stylize(CONTENT, STYLE, progress=_stop_at(0, 1), checkpoint=tmp_path,
                             resume=True, **options)
    assert again.tobytes() == to_pil(reference).tobytes()


def test_checkpoint_meta_is_plain_json(tmp_path):
    saver = ckpt.Checkpointer(tmp_path, _identity(), every=0)
    saver.save(ckpt.RunState(scales=1))
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["format"] == ckpt.FORMAT and meta["identity"]["options"]["size"] == 64


def test_a_resume_reads_with_the_tiles_its_run_began_with(tmp_path):
    from ostransfer.run.job import prepare

    content = Image.new("RGB", (96, 64), (200, 10, 10))
    style = Image.new("RGB", (64, 64), (10, 10, 200))
    begun = Options(size=96, tile=32)
    image = np.zeros((64, 96, 3), np.float32)
    ckpt.Checkpointer(tmp_path, ckpt.identity(content, style, begun)).save(
        ckpt.RunState(1, 1, 2, image, {"x": image}, scales=2))
    assert ckpt.saved_tile(tmp_path) == 32
    job = prepare(content, style, Options(size=96), resume=tmp_path)
    assert job.options.tile == 32 and job.resume.evaluations == 2
    assert ckpt.saved_tile(tmp_path / "nothing here") is None
