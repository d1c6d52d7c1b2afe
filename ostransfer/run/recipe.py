"""Recipes: what made a result, carried by the result itself, so that it can be made again.

A recipe records the package version, every option (the seed among them) and, for each
input file, the path it was read from and the SHA-256 of its bytes. PNG results carry it in
a text chunk (``RECIPE_KEY``); other formats (JPEG, WebP, ...) in a sidecar file
``<result>.recipe.json``. The recipe holds nothing that changes between two runs of the
same job (no time, no output path), so a rerun writes the same bytes: the pixels are
deterministic on a CPU for a seed, and so is the text.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .._version import __version__
from ..files import sha256_file, write_atomic
from ..imaging.io import Encoded, encode, save
from ..method.schedule import content_weights, scale_sides
from .options import InputError, Options

RECIPE_KEY = "ostransfer:recipe"
SIDECAR = ".recipe.json"
FORMAT = 1
INPUTS = ("content", "styles", "content_guide", "style_guide")


class RecipeError(InputError):
    """A recipe that cannot be read or rerun (one line)."""


def _plain(value: Any) -> Any:
    """JSON's types for option values (NumPy numbers, tuples of budgets)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def options_dict(options: Options, styles: int = 1) -> dict[str, Any]:
    """Every option of a run as JSON values, defaults resolved (the content weight, the
    learning rate, the budget of each scale, the style weights normalised, colour
    preservation as its method), so that two spellings of the same run give the same
    dictionary."""
    opts = {key: _plain(value) for key, value in dataclasses.asdict(options).items()}
    sides = scale_sides(options.size)
    opts["evaluations"] = _plain(options.budgets(len(sides)))
    opts["content_weight"] = float(options.weight)
    if options.content_weights(sides) == content_weights(options.weight, sides, None):
        opts["weight_side"] = None  # the same weights as the rule before weight_side existed
    opts["learning_rate"] = float(options.step_size(last=False))
    opts["color_weight"] = options.color
    fractions = options.style_fractions(styles)
    opts["style_weights"] = None if len(set(fractions)) == 1 else [round(f, 12) for f in fractions]
    opts["preserve_color"] = options.color_method or False
    for key in ("tile", "weight_side"):  # as before these existed: the same recipes and names
        if opts[key] is None:
            del opts[key]
    return opts


def options_from_dict(values: dict[str, Any], what: str = "the recipe") -> Options:
    """Options from ``options_dict``'s output (missing keys: the defaults); RecipeError for a
    key this version does not know or a value it cannot use, naming ``what`` holds them."""
    known = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(values) - known)
    if unknown:
        hint = f" (made by ostransfer {values.get('version', 'of another version')}?)" \
            if what == "the recipe" else ""
        raise RecipeError(f"{what} has an option this version does not know: "
                          f"{unknown[0]!r}{hint}")
    values = dict(values)
    if isinstance(values.get("evaluations"), list):
        values["evaluations"] = tuple(values["evaluations"])
    if isinstance(values.get("style_weights"), list):
        values["style_weights"] = tuple(values["style_weights"])
    try:
        return Options(**values).validated()
    except ValueError as exc:
        raise RecipeError(f"{what}'s options are not usable: {exc}") from None


def make_recipe(content: str | os.PathLike, styles: Sequence[str | os.PathLike],
                options: Options, guides: tuple[str | os.PathLike, str | os.PathLike] | None = None,
                digests: dict[str, str] | None = None) -> dict[str, Any]:
    """The recipe of a run on these input files with these options. ``digests``, when given,
    is read and filled (SHA-256 by absolute path, size and modification time), so that a
    batch hashes each file once while a file changed in between is hashed again."""
    digests = {} if digests is None else digests

    def entry(path: str | os.PathLike) -> dict[str, str]:
        where = str(Path(path).absolute())
        stat = os.stat(path)
        key = f"{where}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in digests:
            digests[key] = sha256_file(path)
        return {"path": where, "sha256": digests[key]}

    inputs: dict[str, Any] = {"content": entry(content), "styles": [entry(s) for s in styles]}
    if guides is not None:
        inputs["content_guide"], inputs["style_guide"] = (entry(g) for g in guides)
    return {"format": FORMAT, "ostransfer": __version__,
            "options": options_dict(options, len(styles)), "inputs": inputs}


def read_with(recipe: dict[str, Any], tile: int | None) -> dict[str, Any]:
    """``recipe`` of a run whose job left the tiles to memory, with the core its run chose
    (None: whole images, the recipe as it is)."""
    if tile is None:
        return recipe
    return {**recipe, "options": {**recipe["options"], "tile": int(tile)}}


def same_run(saved: dict[str, Any], recipe: dict[str, Any]) -> bool:
    """Whether a result's ``saved`` recipe is that of a job with ``recipe``: equal, except
    that a job which gives no tile takes the one its run chose for memory (``read_with``)."""
    if "tile" not in recipe.get("options", {}) and isinstance(saved.get("options"), dict):
        saved = {**saved, "options": {k: v for k, v in saved["options"].items() if k != "tile"}}
    return saved == recipe


def recipe_text(recipe: dict[str, Any]) -> str:
    """The canonical text of a recipe (sorted keys, no spaces): equal recipes, equal bytes."""
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"))


def sidecar_path(result: str | os.PathLike) -> Path:
    """Where a result in a format without text chunks keeps its recipe."""
    result = Path(result)
    return result.with_name(result.name + SIDECAR)


def carries_text(result: str | os.PathLike) -> bool:
    """Whether the result's format holds the recipe in the file (PNG) or in a sidecar."""
    return Path(result).suffix.lower() == ".png"


def encode_with_recipe(image: np.ndarray, suffix: str, recipe: dict[str, Any]) -> Encoded:
    """``image`` (H, W, 3) float in [0, 1] encoded for a file ending in ``suffix``, a PNG
    carrying ``recipe`` (other formats: ``save_with_recipe`` writes the sidecar)."""
    return encode(image, suffix, text={RECIPE_KEY: recipe_text(recipe)})


def save_with_recipe(image: np.ndarray | Encoded, out: str | os.PathLike,
                     recipe: dict[str, Any]) -> Path:
    """Write ``image`` (H, W, 3) float in [0, 1], or as ``encode_with_recipe`` encoded it,
    atomically at ``out`` (replacing what is there) carrying ``recipe``; SaveError or
    OSError if it cannot be written."""
    text = {RECIPE_KEY: recipe_text(recipe)}
    written = save(image, out, replace=True, text=text)
    write_sidecar(written, recipe)
    return written


def write_sidecar(result: str | os.PathLike, recipe: dict[str, Any]) -> None:
    """The sidecar recipe of a result whose format has no text chunks (nothing for PNG)."""
    if not carries_text(result):
        write_atomic(sidecar_path(result), recipe_text(recipe).encode("utf-8"))


def read_recipe(result: str | os.PathLike) -> dict[str, Any] | None:
    """The recipe a result carries (its PNG text chunk, or its sidecar file); None if it
    carries none. RecipeError if the file cannot be read or the recipe is damaged."""
    result = Path(result)
    try:
        if carries_text(result):
            with Image.open(result) as image:
                text = getattr(image, "text", {}).get(RECIPE_KEY)
        else:
            sidecar = sidecar_path(result)
            text = sidecar.read_text(encoding="utf-8") if sidecar.exists() else None
    except OSError as exc:
        raise RecipeError(f"{result}: cannot read it ({exc.strerror or exc})") from None
    if text is None:
        return None
    try:
        recipe = json.loads(text)
    except ValueError:
        recipe = None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("options"), dict) \
            or not isinstance(recipe.get("inputs"), dict):
        raise RecipeError(f"{result}: its recipe is damaged")
    return recipe


def recipe_inputs(recipe: dict[str, Any], where: str = "the recipe"
                  ) -> tuple[Path, list[Path], tuple[Path, Path] | None]:
    """(content, styles, guides or None) of a recipe, each file checked against its recorded
    SHA-256; RecipeError naming the first file that is missing or has changed."""
    def checked(entry: Any) -> Path:
        if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
            raise RecipeError(f"{where}: its list of inputs is damaged")
        path = Path(entry["path"])
        if not path.is_file():
            raise RecipeError(f"{where}: the input {path} is not there any more")
        if sha256_file(path) != entry["sha256"]:
            raise RecipeError(f"{where}: the input {path} has changed since the result was made")
        return path

    inputs = recipe["inputs"]
    styles = inputs.get("styles")
    if not isinstance(styles, list) or not styles or "content" not in inputs:
        raise RecipeError(f"{where}: its list of inputs is damaged")
    guides = None
    if "content_guide" in inputs or "style_guide" in inputs:
        guides = (checked(inputs.get("content_guide")), checked(inputs.get("style_guide")))
    return checked(inputs["content"]), [checked(s) for s in styles], guides


# Options whose absence from a recorded run (a recipe, a checkpoint) means the value it ran
# with before they existed: off, although their defaults are not.
ADDED_OFF = {"color_weight": 0.0, "final_detail": 0.0, "weight_side": None}


def recipe_options(recipe: dict[str, Any]) -> Options:
    """The Options a recipe records. A recipe records every option, so one without an
    ``ADDED_OFF`` option was written before it existed: it runs without it, as it did then."""
    return options_from_dict({**ADDED_OFF, **recipe["options"]})
