"""Every result carries its recipe (version, options, seed, each input's SHA-256): in a PNG
text chunk, else a sidecar file; ``stylize --recipe`` remakes the result byte for byte and
refuses, in one line, a recipe whose inputs have changed or that is damaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ostransfer.files import sha256_file
from ostransfer.run import recipe as rc
from ostransfer.run.options import Options

from test_cli import CONTENT, FAST, STYLE, invoke, loaded, model, one_error_line  # noqa: F401

ARGS = ["--size", "40", "--evaluations", "2", *FAST]


def test_options_round_trip_through_the_recipe_dictionary():
    opts = Options(size=300, content_weight=2.5, evaluations=7, seed=3, style_weights=(7, 3),
                   preserve_color=True, learning_rate=1e-3)
    values = rc.options_dict(opts, styles=2)
    again = rc.options_from_dict(json.loads(json.dumps(values)))
    assert rc.options_dict(again, styles=2) == values
    assert values["evaluations"] == [7, 7, 7, 7] and values["preserve_color"] == "luminance"
    # the default learning rate is written out: the default and its explicit value agree
    default = rc.options_dict(Options())
    assert default == rc.options_dict(Options(learning_rate=default["learning_rate"]))
    assert default["learning_rate"] == Options().step_size(last=False)
    assert default["color_weight"] == Options().color > 0
    assert default == rc.options_dict(Options(color_weight=default["color_weight"]))
    # a recipe written before the colour term existed runs without it, as it did then
    older = {k: v for k, v in default.items() if k not in ("color_weight", "final_detail")}
    assert rc.recipe_options({"options": older}).color == 0.0
    assert rc.recipe_options({"options": older}).final_detail == 0.0
    assert default["final_detail"] == Options().final_detail > 0
    # the content weight by side: at 512 px it gives the old rule's weights, so the recipe is
    # as before; at other sizes it says so, and an older recipe at such a size keeps the old
    # rule (the given weight at its last scale)
    assert "weight_side" not in default and rc.options_dict(Options(size=2048))["weight_side"] == 512
    assert rc.recipe_options({"options": default}).content_weights([64, 128, 256, 512]) == \
        Options().content_weights([64, 128, 256, 512])
    small = rc.options_dict(Options(size=256))
    assert small["weight_side"] == 512
    assert rc.options_from_dict(small).content_weights([64, 128, 256]) == [16.0, 8.0, 4.0]
    small.pop("weight_side")
    assert rc.recipe_options({"options": small}).content_weights([64, 128, 256]) == [8.0, 4.0, 2.0]
    with pytest.raises(rc.RecipeError, match="does not know: 'sharpness'"):
        rc.options_from_dict({**values, "sharpness": 1})


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_result_reruns_from_its_recipe_to_the_same_bytes(tmp_path, model, suffix):
    content, style = tmp_path / "content.jpg", tmp_path / "style.jpg"
    shutil.copy(CONTENT, content)
    shutil.copy(STYLE, style)
    first, again = tmp_path / f"first{suffix}", tmp_path / f"again{suffix}"
    assert invoke("stylize", content, style, *ARGS, "--seed", "5", "-o", first).exit_code == 0
    made = rc.read_recipe(first)
    assert made["options"]["seed"] == 5 and made["options"]["size"] == 40
    assert made["inputs"]["content"]["sha256"] == sha256_file(content)
    assert made["ostransfer"] and [s["path"] for s in made["inputs"]["styles"]] == [str(style)]
    if suffix == ".png":
        assert rc.RECIPE_KEY in Image.open(first).text
        assert not rc.sidecar_path(first).exists()
    else:
        assert rc.sidecar_path(first).exists()
    result = invoke("stylize", "--recipe", first, "-o", again, "-q")
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == first.read_bytes()
    if suffix != ".png":
        assert rc.sidecar_path(again).read_bytes() == rc.sidecar_path(first).read_bytes()


def test_a_recipe_whose_input_changed_or_is_damaged_is_refused_in_one_line(tmp_path, model):
    content = tmp_path / "content.jpg"
    shutil.copy(CONTENT, content)
    first = tmp_path / "first.png"
    assert invoke("stylize", content, STYLE, *ARGS, "-o", first).exit_code == 0
    content.write_bytes(content.read_bytes() + b"\0")
    changed = invoke("stylize", "--recipe", first, "-o", tmp_path / "x.png")
    assert changed.exit_code == 2
    assert "has changed since the result was made" in one_error_line(changed)
    content.unlink()
    gone = invoke("stylize", "--recipe", first, "-o", tmp_path / "x.png")
    assert gone.exit_code == 2 and "is not there any more" in one_error_line(gone)
    Image.open(CONTENT).save(tmp_path / "plain.png")
    none = invoke("stylize", "--recipe", tmp_path / "plain.png", "-o", tmp_path / "x.png")
    assert none.exit_code == 2 and "carries no ostransfer recipe" in one_error_line(none)
    damaged = tmp_path / "damaged.jpg"
    shutil.copy(CONTENT, damaged)
    rc.sidecar_path(damaged).write_text("{not json")
    bad = invoke("stylize", "--recipe", damaged, "-o", tmp_path / "x.png")
    assert bad.exit_code == 2 and "its recipe is damaged" in one_error_line(bad)
    both = invoke("stylize", CONTENT, STYLE, "--recipe", first, "-o", tmp_path / "x.png")
    assert both.exit_code == 2 and "give no CONTENT" in one_error_line(both)
    assert not (tmp_path / "x.png").exists()


def test_a_command_that_exports_the_model_files_says_so(tmp_path, monkeypatch, weights_path):
    """The first-use export is announced by the command that triggers it (here stylize,
    stopped right after the announcement)."""
    from ostransfer.nets import provision, vgg16_graphs

    def stop(*args, **kwargs):
        raise provision.ModelError("stopped for the test")

    monkeypatch.setenv("OSTRANSFER_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(provision, "fetch_weights", lambda *a, **k: weights_path)
    monkeypatch.setattr(vgg16_graphs, "write_models", stop)
    result = invoke("stylize", CONTENT, STYLE, *ARGS, "-o", tmp_path / "out.png")
    assert result.exit_code == 2
    assert "Exporting the VGG16 ONNX graphs into" in result.stderr
    assert "stopped for the test" in result.stderr


def test_thorough_takes_the_reference_schedule_and_explicit_options_win(tmp_path, model):
    out = tmp_path / "thorough.png"
    result = invoke("stylize", CONTENT, STYLE, *ARGS, "--thorough", "-o", out)
    assert result.exit_code == 0, result.output
    options = rc.read_recipe(out)["options"]
    assert options["evaluations"] == [2]  # given explicitly (40 px: one scale)
    assert options["learning_rate"] == 1e-3 and options["pyramid_levels"] == 6
    assert options["content_weight"] == 1.6 and options["color_weight"] == 0.0
    assert options["final_detail"] == 0.0
    pixels = tmp_path / "pixels.png"
    assert invoke("stylize", CONTENT, STYLE, *ARGS, "--thorough", "--pyramid-levels", "0",
                  "-o", pixels).exit_code == 0
    options = rc.read_recipe(pixels)["options"]
    assert options["pyramid_levels"] == 0 and options["content_weight"] == 1.6
    heavier = tmp_path / "heavier.png"
    assert invoke("stylize", CONTENT, STYLE, *ARGS, "--thorough", "--content-weight", "3",
                  "--color-weight", "2", "-o", heavier).exit_code == 0
    assert rc.read_recipe(heavier)["options"]["content_weight"] == 3.0
    assert rc.read_recipe(heavier)["options"]["color_weight"] == 2.0
    # RMSprop works on the pyramid it is given: another pyramid, another result
    assert np.abs(np.asarray(Image.open(out), float) - np.asarray(Image.open(pixels), float)).max() > 0


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_result_encoded_by_a_remote_worker_is_the_file_the_driver_would_write(tmp_path, rng,
                                                                               suffix):
    from ostransfer.imaging.io import ImageError

    image = rng.random((20, 30, 3)).astype(np.float32)
    recipe = rc.make_recipe(CONTENT, [STYLE], Options(seed=3))
    direct = rc.save_with_recipe(image, tmp_path / f"direct{suffix}", recipe)
    encoded = rc.encode_with_recipe(image, suffix, recipe)
    sent = rc.save_with_recipe(encoded, tmp_path / f"sent{suffix}", recipe)
    assert sent.read_bytes() == direct.read_bytes()
    assert rc.read_recipe(sent) == recipe == rc.read_recipe(direct)
    with pytest.raises(ImageError, match="encoded for a"):
        rc.save_with_recipe(encoded, tmp_path / "other.webp", recipe)
    assert not (tmp_path / "other.webp").exists()
