"""Export determinism, the weights loader's safety, and model provisioning and repair."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import onnx
import pytest

from ostransfer.nets import provision as models
from ostransfer.nets import vgg16_graphs as export
from ostransfer.nets.weights import WeightsError, load_vgg16_weights

MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.json"


def test_weights_are_the_imagenet_vgg16(vgg_weights):
    kernel, bias = vgg_weights[0]
    assert kernel.shape == (64, 3, 3, 3)
    assert kernel[0, 0, 0, 0] == pytest.approx(-0.5537, abs=1e-4)
    assert bias[0] == pytest.approx(0.4034, abs=1e-4)
    assert [k.shape[0] for k, _ in vgg_weights] == [64, 64, 128, 128, 256, 256, 256,
                                                    512, 512, 512, 512, 512, 512]


def test_export_is_byte_identical_to_the_manifest(vgg_weights, tmp_path):
    made = export.write_models(vgg_weights, tmp_path / "a")
    expected = json.loads(MANIFEST.read_text())
    assert made == expected
    assert (tmp_path / "a" / "manifest.json").read_text() == MANIFEST.read_text()
    export.write_models(vgg_weights, tmp_path / "b")
    for name in export.MODEL_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    total = sum((tmp_path / "a" / name).stat().st_size for name in export.MODEL_FILES)
    assert total < 60e6  # the weights are stored once for all graphs
    for name in (export.FORWARD_FILE, export.VJP_FILE, export.VJP_SCATTER_FILE):
        onnx.checker.check_model(str(tmp_path / "a" / name), full_check=True)


def test_unpickler_refuses_anything_but_numpy(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"VGG16_0": Evil()}))
    monkeypatch.setattr("ostransfer.nets.weights.VGG16_SHA256",
                        __import__("hashlib").sha256(path.read_bytes()).hexdigest())
    with pytest.raises(WeightsError, match="refusing to load builtins.print"):
        load_vgg16_weights(path)


def test_wrong_weights_file_is_refused(tmp_path):
    path = tmp_path / "vgg16.ckpt"
    path.write_bytes(b"not the checkpoint")
    with pytest.raises(models.ModelError, match="sha256"):
        models.export_models(tmp_path / "out", weights=path)


def _isolated(monkeypatch, tmp_path) -> None:
    """No checkout models, no environment folder: only a fresh cache under tmp_path."""
    monkeypatch.delenv("OSTRANSFER_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_CHECKOUT_MODELS", tmp_path / "no-checkout")


def test_provisioning_from_weights_into_an_empty_cache(monkeypatch, tmp_path, weights_path):
    _isolated(monkeypatch, tmp_path)
    folder = models.ensure_models(weights=weights_path)
    assert folder == tmp_path / "cache" / "ostransfer" / "models"
    assert models.check_dir(folder) == []
    assert models.ensure_models() == folder  # found again, nothing re-made


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_model_folder_is_repaired(monkeypatch, tmp_path, model_dir, weights_path, damage):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    target = folder / export.WEIGHTS_FILE
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[1000] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    else:
        target.unlink()
    monkeypatch.setenv("OSTRANSFER_MODELS", str(folder))
    assert models.check_dir(folder) == [export.WEIGHTS_FILE]
    assert models.ensure_models(weights=weights_path) == folder
    assert models.check_dir(folder) == []


def test_unwritable_damaged_folder_is_refused_with_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("OSTRANSFER_MODELS", str(tmp_path / "file-not-folder"))
    (tmp_path / "file-not-folder").write_text("")
    with pytest.raises(models.ModelError, match="fetch-model"):
        models.ensure_models()
