"""The two loss presets and the run defaults that depend on them (docs/algorithm.md §4).

``paper`` is the seed text's formula; ``strotss`` the official code's. Both read the same
hypercolumn size (D = 2179) from slightly different VGG16 layers, and their content terms
differ by a factor N, so their content weights live on different scales (§4.5).
"""

from __future__ import annotations

PRESET_LAYERS: dict[str, tuple[str, ...]] = {
    # the seed text and the paper
    "paper": ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
              "relu4_1", "relu5_1"),
    # the official STROTSS code
    "strotss": ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
                "relu4_3", "relu5_3"),
}
PRESETS = tuple(PRESET_LAYERS)

# The RGB channels of a hypercolumn: "raw" in [0, 1] (the seed text), or "imagenet",
# normalised as the VGG16 input is (the official code reads them after its input
# normalisation, which gives colour about 4.4 times the weight in every distance).
PRESET_RGB: dict[str, str] = {"paper": "raw", "strotss": "imagenet"}

# The preset of a run that names none: the official code's formulas, which with RMSprop
# give the best pictures by the independent measures (docs/quality.md).
DEFAULT_PRESET = "strotss"
# Final-scale content weight of each preset (docs/defaults.md and docs/quality.md have the
# measurements behind them; the official code's own final weight is 2).
DEFAULT_CONTENT_WEIGHT = {"paper": 8192.0, "strotss": 2.0}
# Weight of the colour term (the mean and covariance of the output's colours against the
# painting's; docs/algorithm.md §4.4b), which neither formula has: with it the default keeps
# the painting's lightness and contrast (docs/quality.md). 0 leaves a preset's own formula,
# so ``paper`` stays the seed's.
DEFAULT_COLOR_WEIGHT = {"paper": 0.0, "strotss": 0.5}
# ``--thorough``: the reference code's schedule (futscdav/strotss): 200 RMSprop steps at every
# scale at its step size (1e-3 on [0, 1] images, half at the last scale), its pyramid of 6
# levels, its start images (the style's mean colour plus the content's detail; none added at
# the last scale), its content weight (2 at 512 px for its content term, about 1.25 times smaller
# than ``strotss``'s) in this preset's units, and its objective (no colour term). About nine
# tenths of the reference's time (docs/quality.md).
THOROUGH = {"evaluations": 200, "learning_rate": 1e-3, "pyramid_levels": 6, "init": "style",
            "final_detail": 0.0, "color_weight": 0.0}
THOROUGH_CONTENT_WEIGHT = {"strotss": 1.6}
DEFAULT_SAMPLES = 1024  # N: output/content hypercolumns per sample set
DEFAULT_STYLE_SAMPLES = 5000  # M: style hypercolumns per scale


def check_preset(preset: str) -> str:
    """``preset`` if it is one of PRESETS, else ValueError with the one message for it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def balanced_weight(preset: str, samples: int, weight: float | None = None,
                    reference: int = DEFAULT_SAMPLES) -> float:
    """The content weight at N = ``samples`` that weighs content as ``weight`` (default: the
    preset's) does at N = ``reference``. The ``paper`` content term is a mean over N^2
    entries of order 1/N, so it scales like 1/N and its weight must scale like N;
    ``strotss``'s does not depend on N."""
    check_preset(preset)
    weight = DEFAULT_CONTENT_WEIGHT[preset] if weight is None else float(weight)
    return weight * samples / reference if preset == "paper" else weight


def thorough_options(preset: str = DEFAULT_PRESET) -> dict:
    """The options of a ``--thorough`` run of ``preset`` (keyword arguments of ``stylize``)."""
    check_preset(preset)
    options = dict(THOROUGH)
    if preset in THOROUGH_CONTENT_WEIGHT:
        options["content_weight"] = THOROUGH_CONTENT_WEIGHT[preset]
    return options
