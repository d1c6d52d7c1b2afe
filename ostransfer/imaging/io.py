"""Image I/O with Pillow: float32 RGB arrays in [0, 1] of shape (H, W, 3).

Loading applies EXIF orientation and converts grey, palette, 16-bit, CMYK and alpha images
(alpha composited on white); anything that is not a readable image (missing, a folder, not
an image, truncated, corrupt, over Pillow's decompression-bomb limit) raises ``ImageError``
with one line naming the file. Resizing is antialiased (Pillow's Lanczos when shrinking,
bicubic when enlarging). Saving writes a temporary file next to the target, flushes it to
disk and renames it, so a reader never sees a half-written image and a failed save (a full
disk) leaves nothing behind; it raises ``SaveError``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ..files import write_atomic

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


class ImageError(ValueError):
    """An input that is not a usable image; the message names the file and the problem."""


class SaveError(OSError):
    """An output that could not be written (full disk, permissions, an encoder limit); no
    partial file is left. The message names the file and the problem in one line."""


def format_supported(fmt: str) -> bool:
    """Whether this Pillow build can write ``fmt`` (e.g. WEBP needs libwebp)."""
    Image.init()
    return fmt in Image.SAVE


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB, alpha composited on white, EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / scale * 255 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def load_pil(source: ImageLike) -> Image.Image:
    """Open a path, PIL image or array as an RGB PIL image; raise ImageError if unusable.

    Every failure of a path (missing, unreadable, a folder or device, not an image, truncated
    or corrupt data, over Pillow's decompression-bomb limit) is an ImageError naming it."""
    if isinstance(source, Image.Image):
        try:
            return to_rgb(source)
        except Exception as exc:  # noqa: BLE001 - a broken in-memory image
            raise ImageError(f"unusable image ({type(exc).__name__}: {exc})") from None
    if isinstance(source, np.ndarray):
        return from_array(source)
    try:
        path = Path(source)
    except TypeError:
        raise ImageError(f"expected a path, PIL image or array, got {type(source).__name__}") from None
    try:
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise ImageError(f"{path}: not a regular file")
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
    except OSError:
        pass  # open() below says what is wrong
    try:
        with warnings.catch_warnings():
            # between Pillow's limit and twice it Pillow only warns (a large photo: allowed);
            # its plugins warn about damaged metadata they skip: neither is the user's problem
            warnings.simplefilter("ignore")
            with Image.open(path) as opened:
                opened.load()
                image = to_rgb(opened)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: not readable (permission denied)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused, too many pixels to decode safely ({exc})") from None
    except MemoryError:
        raise ImageError(f"{path}: too large to decode (out of memory)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds on bad data
        raise ImageError(f"{path}: corrupt or truncated image ({_reason(exc)})") from None
    if min(image.size) < 1:
        raise ImageError(f"{path}: image has zero size")
    return image


def _reason(exc: BaseException) -> str:
    """An exception as a short single line (OSError: its strerror)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = " ".join(str(exc).split())
        if not isinstance(exc, OSError) or not text:
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def from_array(array: np.ndarray) -> Image.Image:
    """(H, W, 3|4) or (H, W) array, float in [0, 1] or uint8 -> RGB PIL image."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ImageError(f"expected a numeric image array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"expected an (H, W, 3) image array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"image array has zero size {array.shape}")
    if array.dtype != np.uint8:
        array = to_uint8(array)
    return to_rgb(Image.fromarray(array))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] -> uint8 0..255, rounded half up, clipped (NaN -> 0)."""
    return np.clip(np.nan_to_num(np.asarray(array, dtype=np.float64)) * 255 + 0.5, 0, 255
                   ).astype(np.uint8)


def to_pil(array: np.ndarray) -> Image.Image:
    """(H, W, 3) float in [0, 1] -> 8-bit RGB PIL image."""
    return Image.fromarray(to_uint8(array))


def to_array(image: Image.Image) -> np.ndarray:
    """A PIL RGB image -> (H, W, 3) float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0


def scaled_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) with the long side set to long_side, aspect kept (at least 1 px)."""
    width, height = size
    factor = long_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Antialiased resize to (width, height)."""
    if image.size == size:
        return image
    shrinking = size[0] < image.size[0]
    return image.resize(size, Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC,
                        reducing_gap=3.0 if shrinking else None)


def resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (H, W, C) array to (width, height) per channel, without 8-bit rounding."""
    channels = [Image.fromarray(np.ascontiguousarray(array[..., c], dtype=np.float32), mode="F")
                for c in range(array.shape[2])]
    return np.stack([np.asarray(resize(ch, size)) for ch in channels], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Encoded:
    """An image encoded in the format of ``suffix`` (".png", ".jpg", ...): what a remote
    worker sends back for the driver to write (``save`` writes it as it is)."""

    data: bytes
    suffix: str


def _format(suffix: str, name: str | os.PathLike) -> str:
    """The Pillow format of an extension (".png") of the file ``name``; ImageError for an
    extension it has not."""
    fmt = SAVE_FORMATS.get(suffix.lower())
    if fmt is None:
        raise ImageError(f"{name}: unknown output extension (use one of {', '.join(SAVE_FORMATS)})")
    return fmt


def _write_into(array: np.ndarray, fmt: str, quality: int, text: dict[str, str] | None):
    """A function that writes an (H, W, 3) float image into an open binary file as ``fmt``;
    ``text``: text chunks of a PNG (other formats ignore it)."""
    image = from_array(array)
    options: dict = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG" and text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    return lambda f: image.save(f, format=fmt, **options)


def encode(array: np.ndarray, suffix: str, quality: int = 95,
           text: dict[str, str] | None = None) -> Encoded:
    """An (H, W, 3) float image encoded as ``save`` would write it at a name ending in
    ``suffix``: the same bytes."""
    buffer = io.BytesIO()
    _write_into(array, _format(suffix, suffix), quality, text)(buffer)
    return Encoded(buffer.getvalue(), suffix.lower())


def save(array: np.ndarray | Encoded, path: str | os.PathLike, quality: int = 95, *,
         replace: bool = True, text: dict[str, str] | None = None) -> Path:
    """Write an (H, W, 3) float image atomically; the format follows the extension.

    The image goes to a temporary file in the target's folder, is flushed to disk, then
    renamed over the target: readers see the old file or the whole new one, never a part.
    With ``replace=False`` it never replaces anything at ``path``, even something that
    appears while it is written: FileExistsError then, and nothing is written. Raises
    SaveError (the temporary file removed) when it cannot be written. ``text``: text chunks
    of a PNG (other formats ignore it). An ``Encoded`` image is written as it is (its text
    chunks, quality and format were those given to ``encode``; its suffix must be the
    path's format)."""
    path = Path(path)
    fmt = _format(path.suffix, path)
    if isinstance(array, Encoded):
        if _format(array.suffix, array.suffix) != fmt:
            raise ImageError(f"{path}: the image was encoded for a {array.suffix} file")
        write = array.data
    else:
        write = _write_into(array, fmt, quality, text)
    try:
        return write_atomic(path, write, replace=replace)
    except Exception as exc:  # noqa: BLE001 - Pillow's encoders and the OS raise many kinds
        if isinstance(exc, FileExistsError) and not replace:
            raise
        raise SaveError(f"{path}: cannot write ({_reason(exc)})") from exc
