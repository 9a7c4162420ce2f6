"""Load blueprints from YAML files, with errors that name the file and the field."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from looper_pipelines.blueprints.model import Blueprint

PACKAGED_CATALOG = Path(__file__).with_name("catalog")


class BlueprintError(ValueError):
    """A blueprint file could not be read or validated."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid blueprint"] + [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


def _field_path(loc: tuple[object, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_blueprint(data: object, source: str = "<blueprint>") -> Blueprint:
    if not isinstance(data, dict):
        raise BlueprintError(source, [("(top level)", f"expected a mapping, got {type(data).__name__}")])
    try:
        return Blueprint.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((_field_path(tuple(err["loc"])), msg))
        raise BlueprintError(source, problems) from None


def load_blueprint(path: str | os.PathLike[str]) -> Blueprint:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise BlueprintError(str(p), [("(file)", e.strerror or str(e))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise BlueprintError(str(p), [(where, f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
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


def load_catalog(home: str | os.PathLike[str] | None = None) -> dict[str, Blueprint]:
    out: dict[str, Blueprint] = {}
    for d in blueprint_dirs(home):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")):
            bp = load_blueprint(f)
            out.setdefault(bp.name, bp)
    return out
