"""Many runs: a list of jobs (a CSV or JSON Lines file, or contents x styles), each with its
own output name, skipped when its result is already there with the same recipe, run one
after another with failures kept to their own job (``run_batch``).

A job is a content image, one or more style images and any ``Options`` field; the batch's
shared options apply where a job gives none. Output names say which pair and which options
they are: ``<content>__<style>[+<style2>...][__<option>-<value>...]__<digest>.<ext>``, where
the options are those that differ from the shared ones and the digest (8 hex digits of the
job's recipe without its file digests) keeps two jobs with the same names apart.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .options import InputError, Options
from .recipe import (RecipeError, make_recipe, options_dict, options_from_dict, read_recipe,
                     read_with, recipe_text, same_run)

log = logging.getLogger(__name__)

OPTION_NAMES = {f.name for f in dataclasses.fields(Options)}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SHORT = {"content_weight": "a", "size": "s", "preset": "p",
          "learning_rate": "lr", "evaluations": "ev", "optimizer": "opt",
          "palette_weight": "pw", "pyramid_levels": "lv", "style_weights": "sw",
          "color_weight": "cl", "final_detail": "fd"}


@dataclass(frozen=True)
class BatchJob:
    """One run of a batch: its inputs, the options it sets itself, where its result goes."""

    content: Path
    styles: tuple[Path, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    line: str = ""  # where it came from, for messages ("jobs.csv:3")

    @property
    def names(self) -> list[str]:
        """How errors name its images: the content's path, then each style's."""
        return [str(self.content), *map(str, self.styles)]

    def options(self, shared: dict[str, Any]) -> Options:
        """The job's options: the batch's ``shared`` ones with its own on top; InputError
        (one line, naming the job's line) if they are not usable."""
        try:
            return options_from_dict({**shared, **self.overrides}, what="the job")
        except RecipeError as exc:
            raise InputError(f"{self.line}: {exc}") from None


@dataclass
class Outcome:
    """What became of a job: ``status`` is done, skipped or failed (``error``: one line)."""

    job: BatchJob
    output: Path
    status: str
    seconds: float = 0.0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"content": str(self.job.content), "styles": [str(s) for s in self.job.styles],
                "options": self.job.overrides, "output": str(self.output),
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error}


def _value(text: str) -> Any:
    """A CSV cell: an int, a float, true/false, a comma list of those, or the text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "," in text:
        return [_value(v) for v in text.split(",")]
    return text


def job_from_row(row: dict[str, Any], base: Path, line: str) -> BatchJob:
    """A job from one row (a CSV row or a JSON object); relative paths from ``base``."""
    row = {str(k).strip().replace("-", "_"): v for k, v in row.items()
           if k is not None and v not in (None, "")}
    content = row.pop("content", None)
    styles = row.pop("styles", None) or row.pop("style", None)
    if not content or not styles:
        raise InputError(f"{line}: a job needs a content and a style")
    if isinstance(styles, str):
        styles = [s for s in re.split(r"[;|]", styles) if s.strip()]
    unknown = sorted(set(row) - OPTION_NAMES)
    if unknown:
        raise InputError(f"{line}: unknown column {unknown[0]!r} (a job has content, style or "
                         f"styles, and stylize options such as content_weight or seed)")
    return BatchJob(_resolve(content, base), tuple(_resolve(s, base) for s in styles), row, line)


def _resolve(path: Any, base: Path) -> Path:
    """A job's image path: as given when absolute, else relative to the jobs file's folder."""
    path = Path(str(path).strip())
    return path if path.is_absolute() else base / path


def read_jobs(path: Path) -> list[BatchJob]:
    """Jobs from a CSV file (a header row: content, style or styles, option columns) or a
    JSON Lines file (``.jsonl``, one object per line). Relative image paths are relative to
    the file's folder. InputError (one line) on anything unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") \
            from None
    base = path.parent
    jobs = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputError(f"{path}:{number}: not a JSON object") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: not a JSON object")
            jobs.append(job_from_row(row, base, f"{path}:{number}"))
    else:
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, 2):
            cells = {k: _value(v) if isinstance(v, str) and k not in ("content", "style", "styles")
                     else v for k, v in row.items()}
            jobs.append(job_from_row(cells, base, f"{path}:{number}"))
    if not jobs:
        raise InputError(f"{path}: no jobs in it")
    return jobs


def cross_jobs(contents: str, styles: str) -> list[BatchJob]:
    """Every content matching the glob ``contents`` with every style matching ``styles``."""
    found = [sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
             for pattern in (contents, styles)]
    for pattern, paths, what in zip((contents, styles), found, ("--contents", "--styles")):
        if not paths:
            raise InputError(f"{what} {pattern}: matches no file")
    return [BatchJob(c, (s,), {}, f"{c.name} x {s.name}") for c in found[0] for s in found[1]]


def result_suffix(image_format: str, option: str = "image format") -> str:
    """The results' file extension for ``image_format`` (png, jpg or webp); InputError naming
    ``option`` otherwise."""
    suffix = "." + image_format.lower().lstrip(".")
    if suffix not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"{option} {image_format}: use png, jpg or webp")
    return suffix


def _slug(text: str, limit: int = 40) -> str:
    return _SAFE.sub("-", text).strip("-")[:limit] or "x"


def output_name(job: BatchJob, options: Options, suffix: str = ".png") -> str:
    """The job's output file name (see the module's docstring)."""
    parts = [_slug(job.content.stem), "+".join(_slug(s.stem, 24) for s in job.styles)]
    for key in sorted(job.overrides):
        value = job.overrides[key]
        value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        parts.append(_slug(f"{_SHORT.get(key, key)}-{value}", 24))
    identity = {"inputs": [str(p.absolute()) for p in (job.content, *job.styles)],
                "options": options_dict(options, len(job.styles))}
    digest = hashlib.sha256(recipe_text(identity).encode()).hexdigest()[:8]
    return "__".join(parts + [digest]) + suffix


def plan_batch(jobs: Sequence[BatchJob], shared: dict[str, Any], outdir: Path,
               suffix: str = ".png") -> list[tuple[BatchJob, Options, Path]]:
    """Each job's options and output path; InputError for a job with unusable options or two
    jobs that would write the same file."""
    planned, seen = [], {}
    for job in jobs:
        options = job.options(shared)
        out = outdir / output_name(job, options, suffix)
        if out in seen:
            raise InputError(f"{job.line} and {seen[out]}: the same job twice")
        seen[out] = job.line
        planned.append((job, options, out))
    return planned


def already_done(out: Path, recipe: dict[str, Any]) -> bool:
    """Whether ``out`` holds the result of exactly this recipe (same version, options and
    input bytes; the tiles its run chose, when the job leaves them to memory)."""
    if not out.exists():
        return False
    try:
        saved = read_recipe(out)
        return saved is not None and same_run(saved, recipe)
    except RecipeError:
        return False


def one_line(exc: BaseException) -> str:
    """An exception as the one line a summary shows."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _triage(planned: Sequence[tuple[BatchJob, Options, Path]]) -> Iterator[Any]:
    """Per job: an Outcome (skipped: done before with the same recipe; failed: an input
    cannot be read), or (job, options, out, recipe) to run. Each input file is hashed once."""
    digests: dict[str, str] = {}
    for job, options, out in planned:
        try:
            recipe = make_recipe(job.content, list(job.styles), options, digests=digests)
        except OSError as exc:
            yield Outcome(job, out, "failed", error=f"{exc.filename}: {exc.strerror or exc}")
            continue
        yield Outcome(job, out, "skipped") if already_done(out, recipe) \
            else (job, options, out, recipe)


def run_batch(planned: Sequence[tuple[BatchJob, Options, Path]],
              run_one: Callable[[BatchJob, Options, Path, dict], None],
              on_start: Callable[[int, BatchJob], None] | None = None
              ) -> Iterator[Outcome]:
    """Run the planned jobs one after another, yielding each Outcome as it is known: skipped
    (its output carries the same recipe), done, or failed with its one-line error (a bad
    image, a non-finite loss) while the others go on. ``run_one(job, options, out, recipe)``
    makes and saves one result. A KeyboardInterrupt ends the batch after the finished jobs."""
    for index, item in enumerate(_triage(planned)):
        if isinstance(item, Outcome):
            yield item
            continue
        job, options, out, recipe = item
        if on_start is not None:
            on_start(index, job)
        start = time.perf_counter()
        try:
            run_one(job, options, out, recipe)
        except (ValueError, RuntimeError, OSError, MemoryError) as exc:
            log.info("job %s failed: %s", job.line, exc)
            yield Outcome(job, out, "failed", time.perf_counter() - start, one_line(exc))
            continue
        yield Outcome(job, out, "done", time.perf_counter() - start)


# a job for a worker: (job, options, the result's suffix, its recipe without the tile)
Task = tuple["BatchJob", Options, str, dict]
Runner = Callable[[list[Task]], Iterator[tuple[int, Any, str, float, "int | None"]]]


def run_batch_pool(planned: Sequence[tuple[BatchJob, Options, Path]],
                   save: Callable[[Any, Path, dict], None], runner: Runner
                   ) -> Iterator[Outcome]:
    """``run_batch`` on many workers: ``runner`` takes the Tasks to run and yields (index,
    result or None, error, seconds, the tile core it read with) as each finishes
    (``pool.run_pool``: the result an array; ``cluster.run_cluster``: encoded). Skipped jobs
    come first, then each job as it finishes; ``save(result, out, recipe)`` writes one, its
    recipe with the tile."""
    todo = []
    for item in _triage(planned):
        if isinstance(item, Outcome):
            yield item
        else:
            todo.append(item)
    if not todo:
        return
    for index, result, error, seconds, tile in runner([(j, o, out.suffix, recipe) for j, o, out, recipe in todo]):
        job, _, out, recipe = todo[index]
        if result is not None:
            try:
                save(result, out, read_with(recipe, tile))
            except OSError as exc:
                error = str(exc)
        yield Outcome(job, out, "failed" if error else "done", seconds, error)


def describe(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many jobs are done, skipped and failed."""
    return {status: sum(o.status == status for o in outcomes)
            for status in ("done", "skipped", "failed")}


def shared_options(values: dict[str, Any]) -> dict[str, Any]:
    """The command line's shared options, those given (None: not given)."""
    return {k: v for k, v in values.items() if v is not None and k in OPTION_NAMES}


