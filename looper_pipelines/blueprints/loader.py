"""Load blueprints from YAML files, with errors that name the file and the field.

Files are read with the bounded loader of ``looper_pipelines.safe_yaml`` (size, nesting,
aliases, encoding). ``scan_catalog`` loads every blueprint it finds and keeps the broken
ones apart, so that one broken file never takes the other use cases down.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.safe_yaml import YamlInputError, load_yaml_file, one_line

PACKAGED_CATALOG = Path(__file__).with_name("catalog")
MAX_SHOWN_PROBLEMS = 3  # after the first problem, at most this many more are named
log = logging.getLogger(__name__)


class BlueprintError(ValueError):
    """A blueprint file could not be read or validated.

    ``problems`` lists (field path, problem); ``str()`` is one line of bounded length:
    ``<file>: <field path>: <problem>``, then how many more problems and the next few."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = [(one_line(path, 120), one_line(msg, 300)) for path, msg in problems] or [
            ("(file)", "invalid blueprint")
        ]
        (path, msg), rest = self.problems[0], self.problems[1:]
        line = f"{one_line(source, 300)}: {path}: {msg}"
        if rest:
            shown = "; ".join(f"{p}: {m}" for p, m in rest[:MAX_SHOWN_PROBLEMS])
            more = f", and {len(rest) - MAX_SHOWN_PROBLEMS} more" if len(rest) > MAX_SHOWN_PROBLEMS else ""
            line += f" (also {shown}{more})"
        super().__init__(line)


def _field_path(loc: tuple[object, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + one_line(str(part), 40)
    return out or "(top level)"


def parse_blueprint(data: object, source: str = "<blueprint>") -> Blueprint:
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise BlueprintError(source, [("(top level)", f"expected a mapping, got {got}")])
    try:
        return Blueprint.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((_field_path(tuple(err["loc"])), msg))
        raise BlueprintError(source, problems) from None
    except (RecursionError, MemoryError, OverflowError) as e:  # defence in depth: never a traceback
        raise BlueprintError(source, [("(top level)", f"cannot validate: {type(e).__name__}")]) from None


def load_blueprint(path: str | os.PathLike[str]) -> Blueprint:
    p = Path(path)
    try:
        data = load_yaml_file(p)
    except YamlInputError as e:
        raise BlueprintError(str(p), [(e.where, e.problem)]) from None
    bp = parse_blueprint(data, str(p))
    if p.stem != bp.name:
        raise BlueprintError(str(p), [("name", f"must match the file name {p.stem!r}, got {bp.name!r}")])
    return bp


def blueprint_dirs(home: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for blueprints: $LOOPER_BLUEPRINTS (or the packaged catalog), then
    ``<home>/blueprints`` where imported use cases register theirs."""
    env = os.environ.get("LOOPER_BLUEPRINTS")
    dirs = [Path(env)] if env else [PACKAGED_CATALOG]
    if home is not None:
        dirs.append(Path(home) / "blueprints")
    return dirs


@dataclass(frozen=True)
class Catalog:
    """The blueprints found: the valid ones by use case, and the broken files by the use
    case their file names (``<use case>.yaml``). The first file for a use case wins, in the
    order of ``blueprint_dirs``; a broken one is not replaced by a later valid one."""

    blueprints: dict[str, Blueprint] = field(default_factory=dict)
    broken: dict[str, BlueprintError] = field(default_factory=dict)

    def why_missing(self, use_case: str) -> str:
        """Why ``use_case`` has no valid blueprint: its file is broken, or there is none."""
        if use_case in self.broken:
            return f"use case {use_case!r} is not loaded: its blueprint is broken: {self.broken[use_case]}"
        return f"no blueprint named {one_line(repr(use_case), 80)}; known: {sorted(self.blueprints)}"


def scan_catalog(home: str | os.PathLike[str] | None = None) -> Catalog:
    cat = Catalog()
    for d in blueprint_dirs(home):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")):
            if f.stem in cat.blueprints or f.stem in cat.broken:
                continue
            try:
                bp = load_blueprint(f)
            except BlueprintError as e:
                cat.broken[f.stem] = e
                continue
            cat.blueprints[bp.name] = bp
    return cat


def load_catalog(home: str | os.PathLike[str] | None = None) -> dict[str, Blueprint]:
    """The valid blueprints; each broken file is logged as a warning and left out."""
    cat = scan_catalog(home)
    for e in cat.broken.values():
        log.warning("skipping a broken blueprint: %s", e)
    return cat.blueprints
