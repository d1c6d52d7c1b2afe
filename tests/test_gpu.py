"""The GPU path: `device="cuda"` refused in one line where it cannot run, and, on a machine
with onnxruntime-gpu, CuPy and a CUDA device, the same numbers as the CPU's.

Every test that needs a GPU has "cuda" in its name (``pytest -k "cuda or cupy"`` selects
them, with the CuPy cases of test_losses and the cuda cases of test_features and
test_objective) and skips without one; tools/gpu_check.sh runs them on the GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ostransfer
from ostransfer import arrays
from ostransfer.arrays import DeviceError, cuda_available, to_numpy
from ostransfer.files import sample_image
from ostransfer.method import losses
from ostransfer.method.objective import Objective, style_hypercolumns
from ostransfer.method.sampling import grid_locations
from ostransfer.nets import vgg16_graphs
from ostransfer.nets.runtime import session_options
from ostransfer.nets.vgg16 import FEATURE_LAYERS, LAYERS

ROOT = Path(__file__).resolve().parent.parent
CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
HAVE_CUDA = cuda_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs onnxruntime-gpu, CuPy and a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(HAVE_CUDA, reason="the GPU path can run here")


# ---------------------------------------------------------------------------------------
# device="cuda" where it cannot run: one line, what to install


def test_resolve_device_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(arrays, "cuda_problems", lambda: ["CuPy is not installed"])
    with pytest.raises(DeviceError) as info:
        arrays.resolve_device("cuda")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and "CuPy is not installed" in message
    assert "pip install 'ostransfer[gpu]'" in message
    assert arrays.resolve_device("auto") == "cpu"
    monkeypatch.setattr(arrays, "cuda_problems", list)
    assert arrays.resolve_device("cuda") == "cuda"
    assert arrays.resolve_device("auto") == "cuda"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        arrays.resolve_device("tpu")


@needs_no_cuda
def test_no_gpu_api_raises_device_error(model_dir):
    from ostransfer.nets.engine import VGGFeatures

    assert arrays.cuda_problems()
    with pytest.raises(DeviceError, match=r"pip install 'ostransfer\[gpu\]'"):
        ostransfer.Stylizer(device="cuda")
    with pytest.raises(DeviceError, match=r"pip install"):
        VGGFeatures(device="cuda", model_dir=model_dir)


def _stylize_cli(out: Path, *options: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-m", "ostransfer.cli", "stylize", str(CONTENT),
                           str(STYLE), "-o", str(out), *options],
                          check=False, capture_output=True, text=True, env=env, timeout=300)


@needs_no_cuda
def test_no_gpu_cli_device_cuda_is_one_line_exit_2(tmp_path):
    out = tmp_path / "out.png"
    result = _stylize_cli(out, "--size", "64", "--device", "cuda")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "pip install 'ostransfer[gpu]'" in lines[0]
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# The VJP graph with ScatterElements (the CUDA provider's) against the MaxUnpool one


def _session(name: str, provider: str, folder: Path):
    import onnxruntime as ort

    if provider == "cuda":
        providers = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(folder / name), session_options(), providers=providers)
    if provider == "cuda":
        assert session.get_providers()[0] == "CUDAExecutionProvider"
    return session


@pytest.mark.parametrize("provider", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_vjp_scatter_graph_matches_maxunpool(provider, model_dir, engine, rng):
    """The scatter graph (on `provider`) routes the gradients as the MaxUnpool graph on the
    CPU does (a random image: no ties in the max-pool windows)."""
    image = rng.random((64, 80, 3), dtype=np.float32)
    maps = {name: np.array(m) for name, m in engine.forward(image).items()}
    feeds = dict(maps)
    for name in FEATURE_LAYERS:
        feeds[f"grad_{name}"] = rng.standard_normal(maps[name].shape, dtype=np.float32)
    reference = _session(vgg16_graphs.VJP_FILE, "cpu", model_dir).run(None, feeds)[0]
    scattered = _session(vgg16_graphs.VJP_SCATTER_FILE, provider, model_dir).run(None, feeds)[0]
    assert scattered.shape == reference.shape == (1, 3, 64, 80)
    err = np.linalg.norm(scattered - reference) / np.linalg.norm(reference)
    assert err < (1e-6 if provider == "cpu" else 1e-5)


# ---------------------------------------------------------------------------------------
# On a GPU: the same numbers as the CPU's, to float32 accuracy


@pytest.fixture(scope="module")
def cuda_engine(model_dir):
    if not HAVE_CUDA:
        pytest.skip("needs onnxruntime-gpu, CuPy and a CUDA GPU")
    from ostransfer.nets.engine import VGGFeatures

    return VGGFeatures(device="cuda", model_dir=model_dir)


@needs_cuda
def test_cuda_engine_runs_on_the_cuda_provider(cuda_engine):
    import cupy

    assert cuda_engine.xp is cupy
    assert cuda_engine._forward.get_providers()[0] == "CUDAExecutionProvider"
    assert cuda_engine._vjp.get_providers()[0] == "CUDAExecutionProvider"


@needs_cuda
@pytest.mark.parametrize("height,width", [(64, 64), (48, 80)])
def test_cuda_forward_and_vjp_match_cpu(cuda_engine, engine, height, width, rng):
    """Maps and input gradient on the GPU (cuDNN, ScatterElements, CuPy buffers bound by
    pointer) equal the CPU engine's to float32 accuracy; twice, so that reused buffers and
    the stream order between CuPy and ONNX Runtime are exercised."""
    import cupy

    image = rng.random((height, width, 3), dtype=np.float32)
    grads = {n: rng.standard_normal(to_numpy(m).shape, dtype=np.float32)
             for n, m in engine.forward(image).items() if n in FEATURE_LAYERS}
    cpu_maps = {n: np.array(m) for n, m in engine.forward(image).items()}
    cpu_grad = np.array(engine.backward(grads))
    for _ in range(2):
        maps = cuda_engine.forward(cupy.asarray(image))
        assert all(isinstance(m, cupy.ndarray) for m in maps.values())
        for layer in LAYERS:
            a, b = to_numpy(maps[layer.name]), cpu_maps[layer.name]
            assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b), layer.name
        grad = cuda_engine.backward({n: cupy.asarray(g) for n, g in grads.items()})
        assert isinstance(grad, cupy.ndarray) and grad.shape == (height, width, 3)
        grad = to_numpy(grad)
        assert np.linalg.norm(grad - cpu_grad) <= 1e-5 * np.linalg.norm(cpu_grad)


def _objective(engine, preset, weight, seed, columns=None):
    h, w = 64, 64
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    content = np.stack([0.5 + 0.4 * np.sin(yy / 5 + c) * np.cos(xx / 7 - c) for c in range(3)],
                       -1).astype(np.float32)
    style = rng.random((56, 64, 3), dtype=np.float32)
    image = np.clip(content + 0.1 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
    if columns is None:
        columns = to_numpy(style_hypercolumns(engine, style, preset, 400, rng)).copy()
    xp = engine.xp
    objective = Objective(engine, xp.asarray(content), losses.style_target(xp.asarray(columns)),
                          preset, weight, 256)
    ys, xs = grid_locations(h, w, 256, np.random.default_rng(seed + 1))
    objective.set_locations(ys, xs)
    return objective, image, columns


@needs_cuda
@pytest.mark.parametrize("preset,weight", [("paper", 1024.0), ("strotss", 2.0)])
def test_cuda_objective_matches_cpu_at_64px(cuda_engine, engine, preset, weight):
    """Objective value, terms and image gradient at 64 px: the GPU's equal the CPU's to
    float32 accuracy (the same style columns, locations and image on both)."""
    cpu, image, columns = _objective(engine, preset, weight, 7)
    gpu, _, _ = _objective(cuda_engine, preset, weight, 7, columns)
    value, grad, terms = cpu(image)
    grad = np.array(grad)
    gpu_value, gpu_grad, gpu_terms = gpu(cuda_engine.xp.asarray(image))
    assert isinstance(gpu_value, float)
    assert gpu_value == pytest.approx(value, rel=1e-5)
    for name, term in terms.items():
        assert gpu_terms[name] == pytest.approx(term, rel=1e-4, abs=1e-9), name
    gpu_grad = to_numpy(gpu_grad)
    assert np.linalg.norm(gpu_grad - grad) <= 1e-4 * np.linalg.norm(grad)


@needs_cuda
def test_cuda_stylize_short_run(model_dir):
    """A short two-scale run on the GPU: an RGB image of the asked size, a falling loss."""
    steps = []
    result = ostransfer.Stylizer(device="cuda").stylize(
        CONTENT, STYLE, size=96, samples=128, style_samples=400, evaluations=10, per_round=10,
        seed=3, progress=steps.append)
    assert result.mode == "RGB" and max(result.size) == 96
    final = [s.loss for s in steps if s.side == 96]
    assert final and min(final) < final[0]
    assert all(np.isfinite(s.loss) for s in steps)


@needs_cuda
def test_cuda_cli_stylize(tmp_path):
    out = tmp_path / "out.png"
    result = _stylize_cli(out, "--size", "64", "--evaluations", "5", "--device", "cuda",
                          "--quiet")
    assert result.returncode == 0, result.stderr
    assert out.is_file()


# ---------------------------------------------------------------------------------------
# tools/wheel_pieces.py: what carries the wheel to the GPU machine, one piece per run


def _wheel_pieces():
    import importlib.util

    spec = importlib.util.spec_from_file_location("wheel_pieces", ROOT / "tools" / "wheel_pieces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("compress", ["none", "xz"])
def test_wheel_pieces_travel_one_per_run_and_join(tmp_path, compress):
    import zipfile

    wp = _wheel_pieces()
    rng = np.random.default_rng(0)
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("demo/__init__.py", "x = 1\n" * 5000)
        z.writestr("demo-1.0.dist-info/RECORD", "demo/__init__.py,,\n")
    blob = tmp_path / "weights.ckpt"
    blob.write_bytes(rng.bytes(150_000))
    out, stash = tmp_path / "pieces", tmp_path / "stash"
    tree = tmp_path / "tree"  # the checkout that travels beside the pieces: one small file
    tree.mkdir()
    (tree / "README").write_text("x" * 1000)
    assert wp.tree_bytes(tree) == 1000
    with pytest.raises(wp.PiecesError, match="do not fit"):
        wp.pack([wheel, blob], out, 40_000, compress, tree, 40_500)
    index = wp.pack([wheel, blob], out, 40_000, compress, tree, 64 * wp.MIB)
    assert len(index["pieces"]) >= 2 and not wp.verify_local(index, out)
    for i, piece in enumerate(index["pieces"]):  # each run carries the index and one piece
        carried = tmp_path / f"run{i}"
        carried.mkdir()
        (carried / wp.INDEX).write_bytes((out / wp.INDEX).read_bytes())
        (carried / piece["name"]).write_bytes((out / piece["name"]).read_bytes())
        code = wp.main(["receive", "--out", str(carried), "--stash", str(stash)])
        assert code == (0 if i == len(index["pieces"]) - 1 else 3)
    written = wp.unpack(stash, tmp_path / "bundle")
    assert sorted(p.name for p in written) == sorted([wheel.name, blob.name])
    assert (tmp_path / "bundle" / blob.name).read_bytes() == blob.read_bytes()
    with zipfile.ZipFile(tmp_path / "bundle" / wheel.name) as z:  # stored or as it was
        assert z.read("demo/__init__.py") == b"x = 1\n" * 5000
    if compress == "none":
        assert (tmp_path / "bundle" / wheel.name).read_bytes() == wheel.read_bytes()
    damaged = stash / index["pieces"][0]["name"]
    damaged.write_bytes(b"\0" + damaged.read_bytes()[1:])
    with pytest.raises(wp.PiecesError, match="part-00"):
        wp.unpack(stash, tmp_path / "again")
