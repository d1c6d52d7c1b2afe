"""Control over the result (issue 5): region guides, colour preservation, several styles.

Guides are paired by colour robustly (JPEG guides work, mismatched ones are refused with the
colours named); each output region takes the colours of its paired style region; the
--preserve-color output keeps the content's mean chrominance; several styles mix in
proportion to their weights; the checkpoint identity covers all of it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from ostransfer.cli import app, transfer
from ostransfer.files import sample_image
from ostransfer.imaging.color import keep_luminance, match_statistics, preserve_colors, rgb_to_ycbcr
from ostransfer.imaging.guides import GuideError, Guides, pair_guides
from ostransfer.imaging.io import load_pil, resize, to_array
from ostransfer.method.objective import Objective
from ostransfer.method.optimizer import Stop
from ostransfer.run import checkpoint as ckpt
from ostransfer.run.job import load_guides
from ostransfer.run.options import InputError, Options
from ostransfer.run.plan import plan_scales
from ostransfer.run.style_side import palette_start, style_counts, style_side
from ostransfer.run.stylizer import Interrupted, Stylizer, stream_rng

CONTENT = sample_image("content_chelsea.jpg")
STYLE = sample_image("style_starry_night.jpg")
FAST = ["--samples", "64", "--style-samples", "100", "--per-round", "4", "-q"]

RED, BLUE = np.array([0.9, 0.12, 0.1]), np.array([0.1, 0.2, 0.9])
GREEN, YELLOW, MAGENTA = (0, 160, 0), (255, 255, 0), (255, 0, 255)


def jpeg(image: Image.Image, quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def split_guide(size, left, right, at: float) -> Image.Image:
    """A guide: colour `left` up to the fraction `at` of the width, `right` after it."""
    guide = Image.new("RGB", size, right)
    ImageDraw.Draw(guide).rectangle([0, 0, round(size[0] * at) - 1, size[1] - 1], fill=left)
    return guide


def blob_guide(size=(120, 80), inside=(0, 0, 255), outside=(255, 0, 0)) -> Image.Image:
    """An anti-aliased ellipse (drawn 4x larger, shrunk with Lanczos): soft borders."""
    big = Image.new("RGB", (size[0] * 4, size[1] * 4), outside)
    ImageDraw.Draw(big).ellipse([size[0], size[1] * 0.6, size[0] * 3, size[1] * 3.4], fill=inside)
    return big.resize(size, Image.Resampling.LANCZOS)


# -- pairing guides (no model) ---------------------------------------------------------------

def test_jpeg_guides_pair_and_label_like_png_ones():
    content, style = blob_guide(), split_guide((80, 80), (0, 0, 255), (255, 0, 0), 0.4)
    exact = Guides(content, style)
    noisy = Guides(jpeg(content, 40), jpeg(style, 40))
    assert len(exact) == len(noisy) == 2
    assert np.abs(noisy.pairs.content_colours - exact.pairs.content_colours).max() < 12
    # every pixel snaps to a palette colour: the smeared JPEG borders are no region of
    # their own, and the labels agree with the PNG guide's away from the borders
    assert (noisy.content_labels >= 0).all() and (noisy.style_labels >= 0).all()
    assert np.mean(noisy.content_labels == exact.content_labels) > 0.98
    assert np.mean(noisy.style_labels == exact.style_labels) > 0.98
    # at a scale: nearest-neighbour label maps, both regions present on both sides
    regions, rest = noisy.masks_at((60, 40), (40, 40))
    assert [i for i, _, _ in regions] == [0, 1] and not rest.any()
    assert sum(c.sum() for _, c, _ in regions) == 60 * 40


def test_guides_whose_colours_do_not_pair_are_refused_naming_the_colours():
    content = split_guide((90, 60), (0, 0, 255), (255, 0, 0), 0.5)
    style = split_guide((60, 60), (0, 255, 0), (255, 0, 0), 0.5)
    with pytest.raises(GuideError) as info:
        pair_guides(content, style)
    message = str(info.value)
    assert "content guide colours #0000ff have no match in the style guide" in message
    assert "style guide colours #00ff00 have no match in the content guide" in message
    with pytest.raises(GuideError, match="content guide colours #0[0-2]0[0-2]f[c-f] have no "
                                         "match.*style guide colours #0[0-2]f[c-f]0[0-3] have"):
        load_guides(jpeg(content), jpeg(style))  # the same through the API, from JPEGs
    with pytest.raises(InputError, match="a content guide needs a style guide too"):
        load_guides(content, None)


def test_a_small_foreign_patch_is_no_region_and_compared_with_the_whole_style():
    content = split_guide((160, 120), GREEN, YELLOW, 0.5)
    ImageDraw.Draw(content).rectangle([120, 10, 131, 21], fill=MAGENTA)  # 0.75 % of the guide
    guides = Guides(jpeg(content), split_guide((80, 80), GREEN, YELLOW, 0.5))
    assert len(guides) == 2  # magenta covers under 1 %: not a region colour
    patch = guides.content_labels[10:22, 120:132]
    assert (patch[2:-2, 2:-2] == -1).all()  # its inside is in no region
    regions, rest = guides.masks_at((160, 120), (80, 80))
    assert len(regions) == 2 and rest[12:20, 122:130].all() and rest.sum() < 250
    # a region too small at a scale joins the rest rather than being dropped
    regions, rest = guides.masks_at((16, 12), (8, 8), min_pixels=40)
    assert regions == [] and rest.all()


def test_a_guide_must_have_its_images_shape():
    guides = Guides(split_guide((90, 60), GREEN, YELLOW, 0.5), split_guide((60, 60), GREEN, YELLOW, 0.5))
    guides.check_shapes((451, 300), (120, 120))  # any resolution, same aspect ratio
    with pytest.raises(GuideError, match="the guide is 90x60 px and the content image 60x60 px"):
        guides.check_shapes((60, 60), (60, 60))


# -- colour preservation (no model) ---------------------------------------------------------

@pytest.mark.parametrize("method", ["luminance", "statistics"])
def test_preserve_colors_keeps_the_content_mean_chrominance(rng, method):
    content = np.clip(0.5 + 0.15 * rng.standard_normal((30, 45, 3)) + [0.1, 0.0, -0.1], 0, 1)
    result = np.clip(0.45 + 0.1 * rng.standard_normal((40, 60, 3)) + [-0.15, 0.0, 0.2], 0, 1)
    out = preserve_colors(result.astype(np.float32), content.astype(np.float32), method)
    assert out.shape == result.shape and out.dtype == np.float32
    reference = to_array(resize(Image.fromarray(np.uint8(content * 255 + 0.5)), (60, 40)))
    chroma = lambda image: rgb_to_ycbcr(image)[..., 1:].reshape(-1, 2).mean(axis=0)  # noqa: E731
    assert np.abs(chroma(out) - chroma(reference)).max() < 0.01
    assert np.abs(chroma(result) - chroma(reference)).max() > 0.1  # it was far before
    if method == "luminance":  # the result's light and dark stay where they were
        change = np.abs(rgb_to_ycbcr(out)[..., 0] - rgb_to_ycbcr(result)[..., 0])
        assert np.mean(change < 0.01) > 0.95  # all but a few pixels clipped to [0, 1]


def test_colour_transforms_are_exact_without_clipping(rng):
    a, b = rng.random((8, 8, 3)) * 0.5 + 0.25, rng.random((8, 8, 3)) * 0.5 + 0.25
    assert np.allclose(rgb_to_ycbcr(keep_luminance(a, b))[..., 1:], rgb_to_ycbcr(b)[..., 1:])
    matched = match_statistics(a, b, eps=0.0).reshape(-1, 3)
    assert np.allclose(matched.mean(axis=0), b.reshape(-1, 3).mean(axis=0))
    assert np.allclose(np.cov(matched, rowvar=False), np.cov(b.reshape(-1, 3), rowvar=False))


def test_new_options_are_checked():
    with pytest.raises(ValueError, match="preserve color must be"):
        Options(preserve_color="sepia").validated()
    with pytest.raises(ValueError, match="style weights must be positive numbers, got -1"):
        Options(style_weights=(1.0, -1)).validated()
    assert Options(preserve_color=True).color_method == "luminance"
    assert Options(style_weights=(7, 3)).style_fractions(2) == pytest.approx([0.7, 0.3])
    with pytest.raises(InputError, match="2 style weights given for 3 style images"):
        Options(style_weights=(7, 3)).style_fractions(3)
    assert style_counts(5000, [0.7, 0.3]) == [3500, 1500]
    assert style_counts(100, [0.999, 0.001]) == [100, 1]
    plan = plan_scales((90, 60), [(64, 64), (200, 100)], Options(size=96))
    assert [s.style_sizes for s in plan] == [((64, 64), (64, 32)), ((96, 96), (96, 48))]


def test_checkpoint_identity_covers_guides_styles_weights_and_colour(tmp_path):
    content = Image.new("RGB", (40, 30), (200, 10, 10))
    style, other = Image.new("RGB", (30, 30), (10, 10, 200)), Image.new("RGB", (30, 30), (9, 9, 9))
    guides = (split_guide((40, 30), GREEN, YELLOW, 0.5), split_guide((30, 30), GREEN, YELLOW, 0.5))
    plain = ckpt.identity(content, style, Options(size=64))
    assert set(plain) == {"content", "style", "options", "version"}  # as before the new options
    assert "preserve_color" not in plain["options"] and "style_weights" not in plain["options"]
    two = ckpt.identity(content, [style, other], Options(size=64, style_weights=(7, 3)))
    assert two == ckpt.identity(content, [style, other], Options(size=64, style_weights=(0.7, 0.3)))
    assert two["style"] == [ckpt.image_digest(style), ckpt.image_digest(other)]
    assert ckpt.identity(content, [style, other], Options(size=64)) == \
        ckpt.identity(content, [style, other], Options(size=64, style_weights=(2, 2)))
    assert ckpt.identity(content, style, Options(size=64, preserve_color=True)) == \
        ckpt.identity(content, style, Options(size=64, preserve_color="luminance"))

    def refused(saved: dict, now: dict, message: str) -> None:
        ckpt.Checkpointer(tmp_path, saved).save(ckpt.RunState(scales=1))
        with pytest.raises(ckpt.CheckpointError, match=message):
            ckpt.load(tmp_path, now)

    guided = ckpt.identity(content, style, Options(size=64), guides=guides)
    refused(plain, guided, "made with no content guide; no style guide")
    refused(guided, plain, "made with a content guide \\(now none\\)")
    refused(guided, ckpt.identity(content, style, Options(size=64), guides=guides[::-1]),
            "made with a different content guide; a different style guide")
    refused(two, ckpt.identity(content, [style, other], Options(size=64, style_weights=(1, 3))),
            "style-weights 0.7,0.3 \\(now 0.25,0.75\\)")
    refused(plain, two, "made with 1 style image \\(now 2\\)")
    refused(ckpt.identity(content, style, Options(size=64, preserve_color="statistics")), plain,
            "preserve-color statistics \\(now off\\)")
    ckpt.Checkpointer(tmp_path, guided).save(ckpt.RunState(scales=1))
    assert ckpt.load(tmp_path, ckpt.identity(content, style, Options(size=64), guides=guides))


# -- real runs (tiny) -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stylizer(model_dir):
    return Stylizer(device="cpu")


def synthetic():
    """A grey textured content (96x64); a style whose left half is red and right half blue;
    guides that pair the content's left half with the style's BLUE half and its right half
    with the RED half (crossed, so that following the guide is visible)."""
    rng = np.random.default_rng(7)
    grey = np.clip(0.5 + 0.15 * rng.standard_normal((64, 96, 1)), 0, 1)
    content = np.repeat(grey, 3, axis=2).astype(np.float32)
    style = np.zeros((64, 64, 3))
    style[:, :32], style[:, 32:] = RED, BLUE
    style = np.clip(style + 0.08 * rng.standard_normal(style.shape), 0, 1).astype(np.float32)
    content_guide = split_guide((96, 64), GREEN, YELLOW, 0.5)  # left green, right yellow
    style_guide = split_guide((64, 64), YELLOW, GREEN, 0.5)  # red half yellow, blue half green
    return content, style, content_guide, style_guide


def test_the_guided_loss_wants_each_region_in_its_paired_style(stylizer):
    content, style, content_guide, style_guide = synthetic()
    guides = load_guides(content_guide, style_guide)
    opts = Options(size=96, samples=128, style_samples=300)
    scale = plan_scales((96, 64), (64, 64), opts)[-1]  # 96x64 content, 96x96 style
    style = to_array(resize(Image.fromarray(np.uint8(style * 255 + 0.5)), scale.style_size))
    right = np.zeros_like(content)
    right[:, :48], right[:, 48:] = BLUE, RED  # what the guides ask for
    right = np.clip(right + (content - 0.5) * 0.5, 0, 1).astype(np.float32)
    swapped = np.concatenate([right[:, 48:], right[:, :48]], axis=1)
    target, start = style_side(stylizer.engine, content, [style], [1.0], opts.preset,
                               opts.style_samples, stream_rng(opts.seed, scale.index, 0), guides,
                               scale.style_size)
    assert [r.mask.sum() for r in target] == [48 * 64, 48 * 64]  # two regions, no rest
    # the run starts each region from its paired style region's mean colour
    assert np.allclose(start[:, :48].mean(axis=(0, 1)), BLUE, atol=0.03)
    assert np.allclose(start[:, 48:].mean(axis=(0, 1)), RED, atol=0.03)
    objective = Objective(stylizer.engine, content, target, opts.preset, scale.weight, opts.samples)
    objective.resample(np.random.default_rng(0))
    # the style terms (the total is mostly the content term at this content weight)
    good, bad = (sum(objective(image)[2][t] for t in ("remd", "moment", "palette"))
                 for image in (right, swapped))
    assert good < 0.8 * bad


def test_the_palette_start_gives_each_region_its_paired_style_colours():
    content, style, content_guide, style_guide = synthetic()
    guides = load_guides(content_guide, style_guide)
    start = palette_start(content, [style], [1.0], guides, (64, 64))
    left, right = start[:, :48].reshape(-1, 3), start[:, 48:].reshape(-1, 3)
    assert np.abs(left.mean(axis=0) - BLUE).max() < 0.05
    assert np.abs(right.mean(axis=0) - RED).max() < 0.05
    # the grey texture shows through (the style's noise is as strong as the content's, in
    # every direction, so only in part): lighter content pixels tend to stay lighter
    assert np.corrcoef(content[:, :48].reshape(-1, 3).sum(axis=1), left.sum(axis=1))[0, 1] > 0.2


def test_a_guided_run_gives_each_region_its_paired_style_colours(stylizer):
    content, style, content_guide, style_guide = synthetic()
    out = stylizer.stylize(content, style, content_guide=jpeg(content_guide),
                           style_guide=jpeg(style_guide), size=64, samples=128,
                           style_samples=300, evaluations=8, per_round=8)
    out = np.asarray(out, dtype=np.float32) / 255
    assert out.shape == (43, 64, 3)
    left, right = (part.reshape(-1, 3).mean(axis=0) for part in (out[:, :30], out[:, 34:]))
    assert np.linalg.norm(left - BLUE) < 0.25 * np.linalg.norm(left - RED), left
    assert np.linalg.norm(right - RED) < 0.25 * np.linalg.norm(right - BLUE), right


def test_a_guided_colour_preserving_run_resumes_to_the_uninterrupted_result(stylizer, tmp_path):
    content, style, content_guide, style_guide = synthetic()
    content = content * [1.0, 0.9, 0.7]  # some colour to preserve
    inputs = dict(content_guide=content_guide, style_guide=style_guide, size=80, samples=64,
                  style_samples=100, per_round=2, evaluations=[1, 3], seed=5, preserve_color=True)
    reference = stylizer.stylize(content, style, **inputs)

    def stop(p):
        if (p.scale, p.evaluation) == (1, 2):
            raise Stop

    with pytest.raises(Interrupted):
        stylizer.stylize(content, style, progress=stop, checkpoint=tmp_path, **inputs)
    assert ckpt.read(tmp_path)[1].scale == 1  # the first scale is saved
    with pytest.raises(ckpt.CheckpointError, match="made with a content guide \\(now none\\); a "
                                                   "style guide \\(now none\\); preserve-color"):
        stylizer.stylize(content, style, checkpoint=tmp_path, resume=True, size=80, samples=64,
                         style_samples=100, per_round=2, evaluations=[1, 3], seed=5)
    resumed = stylizer.stylize(content, style, checkpoint=tmp_path, resume=True, **inputs)
    assert resumed.tobytes() == reference.tobytes()
    assert ckpt.read(tmp_path)[1].complete


# -- the command line ----------------------------------------------------------------------

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def model(stylizer, monkeypatch):
    monkeypatch.setattr(transfer, "Stylizer", lambda device: stylizer)


def _chroma(image: np.ndarray) -> np.ndarray:
    return rgb_to_ycbcr(image)[..., 1:].reshape(-1, 2).mean(axis=0)


def test_preserve_color_keeps_the_content_mean_chrominance(tmp_path, model):
    args = [CONTENT, STYLE, "--size", "48", "--evaluations", "4", *FAST]
    plain, kept = tmp_path / "plain.png", tmp_path / "kept.png"
    assert invoke("stylize", *args, "-o", plain).exit_code == 0
    result = invoke("stylize", *args, "-o", kept, "--preserve-color")
    assert result.exit_code == 0, result.output
    plain, kept = (to_array(Image.open(p).convert("RGB")) for p in (plain, kept))
    content = to_array(resize(load_pil(CONTENT), (kept.shape[1], kept.shape[0])))
    assert np.abs(_chroma(kept) - _chroma(content)).max() < 0.01
    assert np.abs(_chroma(plain) - _chroma(content)).max() > 0.03  # the style's colours
    # the stylised light and dark are kept
    assert np.corrcoef(rgb_to_ycbcr(kept)[..., 0].ravel(),
                       rgb_to_ycbcr(plain)[..., 0].ravel())[0, 1] > 0.95


def test_several_styles_mix_in_proportion_to_their_weights(tmp_path, model):
    rng = np.random.default_rng(3)
    styles = []
    for name, colour in (("red.png", RED), ("blue.png", BLUE)):
        pixels = np.clip(colour + 0.08 * rng.standard_normal((48, 48, 3)), 0, 1)
        Image.fromarray(np.uint8(pixels * 255 + 0.5)).save(tmp_path / name)
        styles.append(tmp_path / name)
    means = {}
    for weights in ("0.8,0.2", "1,4"):
        out = tmp_path / f"{weights}.png"
        result = invoke("stylize", CONTENT, *styles, "--style-weight", weights, "-o", out,
                        "--size", "48", "--evaluations", "4", *FAST)
        assert result.exit_code == 0, result.output
        means[weights] = to_array(Image.open(out).convert("RGB")).reshape(-1, 3).mean(axis=0)
    redder, bluer = means["0.8,0.2"], means["1,4"]
    assert redder[0] - redder[2] > 0.2 and bluer[2] - bluer[0] > 0.2, means
