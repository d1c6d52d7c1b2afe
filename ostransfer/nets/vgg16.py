"""The VGG16 layers ostransfer reads, and which of them each preset uses (docs/algorithm.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

from ..presets import PRESET_LAYERS, PRESET_RGB, check_preset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Layer:
    name: str  # e.g. "relu3_2"
    conv: int  # index of its conv among the 13 (0-based)
    channels: int
    pools: int  # max pools before it: the map is the image size / 2**pools (floor)


# Every post-ReLU output of VGG16 `features` up to relu5_3, in network order.
LAYERS: tuple[Layer, ...] = tuple(
    Layer(f"relu{block + 1}_{i + 1}", conv, ch, block)
    for conv, (block, i, ch) in enumerate(
        [(0, 0, 64), (0, 1, 64), (1, 0, 128), (1, 1, 128), (2, 0, 256), (2, 1, 256),
         (2, 2, 256), (3, 0, 512), (3, 1, 512), (3, 2, 512), (4, 0, 512), (4, 1, 512),
         (4, 2, 512)]
    )
)
LAYER_BY_NAME = {layer.name: layer for layer in LAYERS}

# Layers a hypercolumn can draw from (the union of the presets); the engine serves these.
FEATURE_LAYERS: tuple[str, ...] = tuple(
    layer.name for layer in LAYERS
    if any(layer.name in names for names in PRESET_LAYERS.values())
)


def map_shape(height: int, width: int, channels: int, pools: int) -> tuple[int, int, int, int]:
    """(1, C, H, W) of a layer map: each 2x2 stride-2 pool floors the size."""
    return (1, channels, height >> pools, width >> pools)


def hypercolumn_layers(preset: str) -> tuple[Layer, ...]:
    """The VGG layers of a preset's hypercolumn, in order (the RGB channels come first)."""
    return tuple(LAYER_BY_NAME[name] for name in PRESET_LAYERS[check_preset(preset)])


def hypercolumn_rgb(preset: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) a preset's hypercolumn RGB channels are normalised with, or None for
    raw [0, 1] values (presets.PRESET_RGB)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if PRESET_RGB[check_preset(preset)] == "imagenet" \
        else None


def hypercolumn_dim(preset: str) -> int:
    """D: 3 RGB channels plus every layer's channels (2179 for both presets)."""
    return 3 + sum(layer.channels for layer in hypercolumn_layers(preset))


def conv_flops(height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of VGG16's 13 convolutions at (height, width).

    The VJP's input-gradient convolutions (transposed, Cout -> Cin) have the same count, so
    one forward + VJP is twice this. ReLU, pooling and the normalisation are left out."""
    total, cin = 0, 3
    for layer in LAYERS:
        total += 2 * cin * layer.channels * 9 * (height >> layer.pools) * (width >> layer.pools)
        cin = layer.channels
    return total
