"""Import existing logged bandit data (CSV or Parquet) into the decision and observation logs.

``import_logs(home, use_case, blueprint_path, mapping, files)`` reads each file with Polars,
maps its columns onto the use case's blueprint, validates every row of every file, and only
then writes one decision record per row and one observation per non-empty reward through
``LogStore`` -- so a bad value anywhere means nothing is imported.

The column mapping (YAML, or a dict with the same keys)::

    timestamp: <column>            # when the decision was made
    timestamp_format: <format>     # optional: a strptime format such as "%Y-%m-%d %H:%M:%S%.f%:z",
                                   # or unix_s / unix_ms / unix_us for numeric columns
    action: <column>
    action_values: index | name    # index: integer position in the blueprint's actions
                                   # name: the action's name
    propensity: <column>           # the logging policy's probability of that action, in (0, 1]
    features: {<feature>: <column>, ...}  # must cover the blueprint's required features
    rewards: {<label>: <column>, ...}     # one observation per row and label
    subject_id: <column>           # optional; default "<file stem>:<row>"
    experiment_arm: <column>       # optional; needs an experiment in the blueprint

Conventions:

- Rows are numbered from 1, the header not counted (the first data row is row 1).
- Timestamps without a time zone are taken as UTC.
- Each reward becomes an observation named after its label, one second after the decision
  (half the label window if that is shorter), with an ``observation_id`` derived from the use case, the
  file's sha256, the row and the label -- the same file always yields the same ids.
  A 0 reward of a binary label (filled with 0, aggregated with max or sum) yields no
  observation, as online logging only records what happened; an empty reward cell yields
  none either (the label takes its fill value).
- Float features: NaN is a missing value (the feature's default, or an error if required).
- A ledger, ``<home>/state/imports.json``, records each imported file by sha256; importing
  the same content into the same use case again is refused unless ``force=True``. A forced
  import logs the decisions again under new decision ids (the decision log is append-only),
  so use it only after the earlier records were removed or when duplicates are wanted.
- The blueprint is registered as ``<home>/blueprints/<use_case>.yaml`` (the file's own text)
  so ``load_catalog(home)`` knows the use case. A different blueprint already registered
  under that name is replaced only with ``force=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from looper_pipelines.blueprints import Blueprint, BlueprintError, blueprint_dirs, load_blueprint
from looper_pipelines.blueprints.model import Feature
from looper_pipelines.client.features import FeatureEncoder
from looper_pipelines.errors import LooperInputError
from looper_pipelines.home import HomeLayout
from looper_pipelines.logs.records import DECISIONS, OBSERVATIONS, new_decision_id
from looper_pipelines.logs.segments import check_use_case
from looper_pipelines.logs.writer import LogStore

PathLike = str | os.PathLike[str]

POLICY_VERSION = "imported"
LEDGER_FILE = "imports.json"
UNIX_FORMATS = {"unix_s": 1_000_000, "unix_ms": 1_000, "unix_us": 1}
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OBSERVATION_DELAY_US = 1_000_000
# timestamps past this (year 3000) are almost surely a wrong unit
_MAX_TS_US = 32_503_680_000_000_000


class LogImportError(LooperInputError):
    """Bad mapping, file or value. ``field`` names the mapping field (``mapping.features.x``),
    the argument or the file; ``file``/``row``/``column`` locate a bad value."""

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(field, problem)
        self.file = file
        self.row = row
        self.column = column


# -- the mapping -------------------------------------------------------------------------
Column = Annotated[str, Field(min_length=1)]


class ColumnMapping(BaseModel):
    """Where the columns of the imported files go (see the module documentation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: Column
    timestamp_format: str | None = None
    action: Column
    action_values: Literal["index", "name"]
    propensity: Column
    features: dict[str, Column] = {}
    rewards: dict[str, Column] = {}
    subject_id: Column | None = None
    experiment_arm: Column | None = None

    @field_validator("timestamp_format")
    @classmethod
    def _check_format(cls, v: str | None) -> str | None:
        if v is not None and v not in UNIX_FORMATS and "%" not in v:
            raise ValueError(
                f"{v!r} is neither a strptime format (with % directives) nor one of {sorted(UNIX_FORMATS)}"
            )
        return v

    def columns(self) -> list[tuple[str, str]]:
        """(mapping field, column) of every mapped column, in mapping order."""
        out = [
            ("timestamp", self.timestamp),
            ("action", self.action),
            ("propensity", self.propensity),
        ]
        out += [(f"features.{k}", c) for k, c in self.features.items()]
        out += [(f"rewards.{k}", c) for k, c in self.rewards.items()]
        if self.subject_id is not None:
            out.append(("subject_id", self.subject_id))
        if self.experiment_arm is not None:
            out.append(("experiment_arm", self.experiment_arm))
        return out


def _loc(loc: Sequence[object]) -> str:
    return "mapping" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def load_mapping(source: PathLike | Mapping[str, Any] | ColumnMapping) -> ColumnMapping:
    """A mapping from a YAML file, a dict or an existing ``ColumnMapping``; errors name
    the mapping field (``mapping.features.position: ...``)."""
    if isinstance(source, ColumnMapping):
        return source
    where = ""
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        p = Path(source)
        where = f" ({p})"
        try:
            text = p.read_text()
        except OSError as e:
            raise LogImportError("mapping", f"cannot read {p}: {e.strerror or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise LogImportError("mapping", f"{p} is not valid YAML: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise LogImportError(
            "mapping", f"expected a mapping of fields{where}, got {type(data).__name__}"
        )
    try:
        return ColumnMapping.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        msgs = [f"{_loc(err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in errs]
        first = errs[0]
        problem = first["msg"].removeprefix("Value error, ") + where
        if len(msgs) > 1:
            problem += "; also " + "; ".join(msgs[1:])
        raise LogImportError(_loc(first["loc"]), problem) from None


def check_mapping(mapping: ColumnMapping, bp: Blueprint) -> None:
    """Cross-check a mapping against the blueprint: known features and labels, every
    required feature mapped, an experiment for ``experiment_arm``."""
    for name in mapping.features:
        if name not in bp.feature_names:
            raise LogImportError(
                f"mapping.features.{name}",
                f"{name!r} is not a feature of blueprint {bp.name!r} (features: {', '.join(bp.feature_names)})",
            )
    missing = [f.name for f in bp.features if f.required and f.name not in mapping.features]
    if missing:
        raise LogImportError(
            "mapping.features",
            f"no column for the required feature(s) {', '.join(missing)} of blueprint {bp.name!r} "
            "(features without a default must be mapped)",
        )
    for name in mapping.rewards:
        if name not in bp.label_names:
            raise LogImportError(
                f"mapping.rewards.{name}",
                f"{name!r} is not a label of blueprint {bp.name!r} (labels: {', '.join(bp.label_names)})",
            )
    if mapping.experiment_arm is not None and bp.experiment is None:
        raise LogImportError(
            "mapping.experiment_arm",
            f"blueprint {bp.name!r} declares no experiment, so rows cannot have arms",
        )


# -- the report --------------------------------------------------------------------------
@dataclass(frozen=True)
class FileImport:
    path: str
    sha256: str
    rows: int
    decisions: int
    observations: dict[str, int]
    first_timestamp: datetime
    last_timestamp: datetime


@dataclass(frozen=True)
class ImportReport:
    use_case: str
    blueprint_version: str
    blueprint_path: str
    files: list[FileImport] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        return sum(f.decisions for f in self.files)

    @property
    def observations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for k, n in f.observations.items():
                out[k] = out.get(k, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for f in d["files"]:
            f["first_timestamp"] = f["first_timestamp"].isoformat()
            f["last_timestamp"] = f["last_timestamp"].isoformat()
        d["decisions"] = self.decisions
        d["observations"] = self.observations
        return d

    def summary(self) -> str:
        obs = self.observations
        obs_text = ", ".join(f"{k}: {n}" for k, n in obs.items()) or "none"
        lines = [
            f"imported {self.decisions} decisions and {sum(obs.values())} observations ({obs_text}) "
            f"into use case {self.use_case!r} (blueprint version {self.blueprint_version})"
        ]
        for f in self.files:
            lines.append(
                f"  {f.path}: {f.rows} rows, {f.first_timestamp:%Y-%m-%d %H:%M:%S} .. "
                f"{f.last_timestamp:%Y-%m-%d %H:%M:%S} UTC, sha256 {f.sha256[:12]}"
            )
        lines.append(f"blueprint registered at {self.blueprint_path}")
        return "\n".join(lines)


# -- the ledger of imported files ----------------------------------------------------------
def ledger_path(home: PathLike | None) -> Path:
    return HomeLayout.of(home).state / LEDGER_FILE


def read_ledger(home: PathLike | None) -> list[dict[str, Any]]:
    """Every import recorded under ``home`` (oldest first)."""
    return _read_ledger(ledger_path(home))


def _read_ledger(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise LogImportError("home", f"cannot read the import ledger {path}: {e}") from None
    return list(data.get("imports", [])) if isinstance(data, dict) else []


def _write_ledger(path: Path, entries: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump({"imports": entries}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One import at a time per home (imports are rare; the lock spans the whole import)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- reading and validating one file -----------------------------------------------------
@dataclass
class _Prepared:
    path: Path
    display: str
    sha256: str
    rows: int
    timestamps: list[int]
    action_index: list[int]
    propensity: list[float]
    features: list[dict[str, Any]]
    subject_id: list[str]
    experiment_arm: list[str | None]
    rewards: dict[str, list[float | None]]
    observations: dict[str, int]


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _preview(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _sha256(path: Path, display: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise LogImportError(display, f"cannot read the file: {e.strerror or e}") from None
    return h.hexdigest()


class _FileCheck:
    """Column conversion with errors naming the mapping field, the file, row and column."""

    def __init__(self, display: str, df: pl.DataFrame) -> None:
        self.display = display
        self.df = df

    def fail_rows(
        self,
        fld: str,
        column: str,
        bad: pl.Series,
        problem: Callable[[Any], str],
        values: pl.Series | None = None,
    ) -> None:
        idx = bad.fill_null(False).arg_true()
        if idx.len() == 0:
            return
        i = int(idx[0])
        v = (values if values is not None else self.df.get_column(column))[i]
        more = idx.len() - 1
        tail = f" ({more} more row{'s' if more > 1 else ''} with this problem)" if more else ""
        raise LogImportError(
            f"mapping.{fld}",
            f"{self.display} row {i + 1}, column {column!r}: {problem(v)}{tail}",
            file=self.display,
            row=i + 1,
            column=column,
        )

    def fail_type(self, fld: str, column: str, expected: str) -> None:
        dtype = self.df.schema[column]
        raise LogImportError(
            f"mapping.{fld}",
            f"column {column!r} of {self.display} holds {dtype}, expected {expected}",
            file=self.display,
            column=column,
        )

    def require(self, fld: str, column: str, what: str) -> None:
        s = self.df.get_column(column)
        self.fail_rows(fld, column, s.is_null(), lambda _: f"missing {what} (empty cell)")

    def numbers(self, fld: str, column: str) -> pl.Series:
        s = self.df.get_column(column)
        if s.dtype.is_numeric() or s.dtype == pl.Boolean:
            return s.cast(pl.Float64)
        if s.dtype == pl.Utf8:
            x = s.str.strip_chars().cast(pl.Float64, strict=False)
            self.fail_rows(
                fld, column, s.is_not_null() & x.is_null(), lambda v: f"{v!r} is not a number"
            )
            return x
        self.fail_type(fld, column, "numbers")
        raise AssertionError  # pragma: no cover

    def strings(self, column: str) -> pl.Series:
        s = self.df.get_column(column)
        return s if s.dtype == pl.Utf8 else s.cast(pl.Utf8)

    # -- the mapped fields -------------------------------------------------------------
    def timestamps(self, column: str, fmt: str | None) -> list[int]:
        fld = "timestamp"
        s = self.df.get_column(column)
        self.require(fld, column, "timestamp")
        if fmt in UNIX_FORMATS or (s.dtype.is_numeric() and fmt is None):
            if fmt is None:
                raise LogImportError(
                    "mapping.timestamp_format",
                    f"column {column!r} of {self.display} holds numbers ({s.dtype}); set timestamp_format "
                    f"to one of {sorted(UNIX_FORMATS)}",
                    file=self.display,
                    column=column,
                )
            x = self.numbers(fld, column)
            self.fail_rows(fld, column, ~x.is_finite(), lambda v: f"timestamp {v!r} is not finite")
            us = (x * UNIX_FORMATS[fmt]).round(0).cast(pl.Int64)
        else:
            if s.dtype == pl.Utf8:
                text = s.str.strip_chars()
                if (
                    fmt is None
                    and text.cast(pl.Float64, strict=False).null_count() == s.null_count()
                ):
                    raise LogImportError(
                        "mapping.timestamp_format",
                        f"column {column!r} of {self.display} holds numbers; set timestamp_format "
                        f"to one of {sorted(UNIX_FORMATS)}",
                        file=self.display,
                        column=column,
                    )
                hint = (
                    f"format {fmt!r}"
                    if fmt
                    else "the format of the first row; set timestamp_format"
                )
                try:
                    parsed = text.str.to_datetime(format=fmt, strict=False, time_unit="us")
                except pl.exceptions.PolarsError:  # no format given and none could be inferred
                    hint = "no format could be inferred; set timestamp_format"
                    parsed = pl.Series(column, [None] * s.len(), dtype=pl.Datetime("us"))
                self.fail_rows(
                    fld,
                    column,
                    s.is_not_null() & parsed.is_null(),
                    lambda v: f"cannot parse timestamp {v!r} ({hint})",
                )
            elif s.dtype == pl.Date:
                parsed = s.cast(pl.Datetime("us"))
            elif isinstance(s.dtype, pl.Datetime):
                parsed = s
            else:
                self.fail_type(fld, column, "timestamps (text, date or datetime)")
                raise AssertionError  # pragma: no cover
            dtype = parsed.dtype
            assert isinstance(dtype, pl.Datetime)
            if dtype.time_zone is None:
                parsed = parsed.dt.replace_time_zone("UTC")
            else:
                parsed = parsed.dt.convert_time_zone("UTC")
            us = parsed.dt.epoch("us")
        self.fail_rows(
            fld,
            column,
            (us < 0) | (us >= _MAX_TS_US),
            lambda v: f"timestamp {v!r} is before 1970 or after 3000 (wrong unit or format?)",
        )
        return [int(v) for v in us.to_list()]

    def actions(self, column: str, values: Literal["index", "name"], bp: Blueprint) -> list[int]:
        fld = "action"
        actions = bp.decision.actions
        k = len(actions)
        self.require(fld, column, "action")
        s = self.df.get_column(column)
        if values == "name":
            names = self.strings(column)
            self.fail_rows(
                fld,
                column,
                ~names.is_in(actions),
                lambda v: (
                    f"{v!r} is not an action of blueprint {bp.name!r} (actions: {_preview(actions)})"
                ),
                names,
            )
            pos = {a: i for i, a in enumerate(actions)}
            return [pos[a] for a in names.to_list()]
        if s.dtype.is_integer():
            x = s.cast(pl.Int64)
        else:
            if s.dtype == pl.Boolean:
                self.fail_type(fld, column, "integer action indexes")
            f = self.numbers(fld, column)
            self.fail_rows(
                fld,
                column,
                ~f.is_finite() | (f != f.floor()),
                lambda v: f"action index {v!r} is not an integer",
            )
            x = f.cast(pl.Int64)
        self.fail_rows(
            fld,
            column,
            (x < 0) | (x >= k),
            lambda v: (
                f"action index {v} is out of range: blueprint {bp.name!r} has {k} actions (0..{k - 1})"
            ),
            x,
        )
        return [int(v) for v in x.to_list()]

    def propensities(self, column: str) -> list[float]:
        fld = "propensity"
        self.require(fld, column, "propensity")
        x = self.numbers(fld, column)
        self.fail_rows(
            fld,
            column,
            ~x.is_finite() | (x <= 0) | (x > 1),
            lambda v: f"propensity {v!r} is outside (0, 1]",
        )
        return [float(v) for v in x.to_list()]

    def rewards(self, label: str, column: str, bp: Blueprint) -> list[float | None]:
        fld = f"rewards.{label}"
        x = self.numbers(fld, column)
        self.fail_rows(fld, column, ~x.is_finite(), lambda v: f"reward {v!r} is not finite")
        if bp.label(label).kind == "binary":
            self.fail_rows(
                fld,
                column,
                ~x.is_in([0.0, 1.0]),
                lambda v: f"label {label!r} is binary: expected 0 or 1, got {v!r}",
            )
        return x.to_list()

    def feature_values(self, f: Feature, column: str) -> list[Any]:
        fld = f"features.{f.name}"
        s = self.df.get_column(column)
        if f.type == "category":
            return self.strings(column).to_list()
        if f.type == "bool":
            if s.dtype == pl.Boolean:
                return s.to_list()
            raw = s.to_list()
            if s.dtype.is_integer():
                return [{0: False, 1: True}.get(v, v) if v is not None else None for v in raw]
            if s.dtype == pl.Utf8:
                words = {"true": True, "false": False, "1": True, "0": False}
                return [words.get(v.strip().lower(), v) if v is not None else None for v in raw]
            return raw
        if s.dtype == pl.Boolean:
            return s.to_list()  # the encoder rejects booleans for numeric features
        if s.dtype.is_float():
            return s.fill_nan(None).to_list()
        if s.dtype.is_numeric():
            return s.to_list()
        if s.dtype == pl.Utf8:
            return self.numbers(fld, column).fill_nan(None).to_list()
        self.fail_type(fld, column, f"{f.type} values")
        raise AssertionError  # pragma: no cover

    def features(self, mapping: ColumnMapping, bp: Blueprint) -> list[dict[str, Any]]:
        encoder = FeatureEncoder(bp)
        by_name = {f.name: f for f in bp.features}
        cols = {
            name: self.feature_values(by_name[name], col) for name, col in mapping.features.items()
        }
        names = list(cols)
        out: list[dict[str, Any]] = []
        normalise = encoder.normalise
        for i, values in enumerate(zip(*(cols[n] for n in names), strict=True)):
            row = {n: v for n, v in zip(names, values, strict=True) if v is not None}
            try:
                out.append(normalise(row))
            except LooperInputError as e:
                name = e.field.removeprefix("features.")
                column = mapping.features.get(name, "?")
                problem = e.problem
                if name not in row and by_name[name].required:
                    problem = "empty cell for a required feature (no default declared)"
                raise LogImportError(
                    f"mapping.features.{name}",
                    f"{self.display} row {i + 1}, column {column!r}: {problem}",
                    file=self.display,
                    row=i + 1,
                    column=column,
                ) from None
        if not names:
            out = [normalise({}) for _ in range(self.df.height)]
        return out

    def subjects(self, column: str) -> list[str]:
        s = self.strings(column)
        self.fail_rows(
            "subject_id",
            column,
            s.is_null() | (s.str.strip_chars() == ""),
            lambda _: "missing subject id",
            s,
        )
        return s.to_list()

    def arms(self, column: str, bp: Blueprint) -> list[str | None]:
        assert bp.experiment is not None
        arms = [a.name for a in bp.experiment.arms]
        s = self.strings(column)
        self.fail_rows(
            "experiment_arm",
            column,
            s.is_not_null() & ~s.is_in(arms),
            lambda v: (
                f"{v!r} is not an experiment arm of blueprint {bp.name!r} (arms: {', '.join(arms)})"
            ),
            s,
        )
        return s.to_list()


def _read_table(path: Path, display: str, mapping: ColumnMapping, bp: Blueprint) -> pl.DataFrame:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise LogImportError(
            display,
            f"unsupported file type {path.suffix or '(no extension)'!r}; expected one of {', '.join(READERS)}",
            file=display,
        )
    try:
        if kind == "csv":
            columns = pl.read_csv(path, n_rows=0).columns
        else:
            columns = list(pl.read_parquet_schema(path))
    except (OSError, pl.exceptions.PolarsError) as e:
        raise LogImportError(
            display, f"cannot read as {kind.upper()}: {_first_line(e)}", file=display
        ) from None
    present = set(columns)
    for fld, col in mapping.columns():
        if col not in present:
            raise LogImportError(
                f"mapping.{fld}",
                f"column {col!r} not found in {display} (columns: {_preview([repr(c) for c in columns], 20)})",
                file=display,
                column=col,
            )
    needed = list(dict.fromkeys(col for _, col in mapping.columns()))
    try:
        if kind == "csv":
            # read text-like fields as text: category values such as "007" keep their zeros
            text = {mapping.timestamp} if mapping.timestamp_format not in UNIX_FORMATS else set()
            by_name = {f.name: f for f in bp.features}
            text |= {c for n, c in mapping.features.items() if by_name[n].type == "category"}
            text |= {c for c in (mapping.subject_id, mapping.experiment_arm) if c is not None}
            if mapping.action_values == "name":
                text.add(mapping.action)
            df = pl.read_csv(
                path,
                columns=needed,
                schema_overrides={c: pl.Utf8 for c in text},
                infer_schema_length=None,
            )
        else:
            df = pl.read_parquet(path, columns=needed)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise LogImportError(
            display, f"cannot read as {kind.upper()}: {_first_line(e)}", file=display
        ) from None
    if df.height == 0:
        raise LogImportError(display, "has no data rows", file=display)
    # a blank text cell is a missing value, as an empty CSV cell is
    blank = [
        pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c)
        for c, t in df.schema.items()
        if t == pl.Utf8
    ]
    return df.with_columns(blank) if blank else df


def _prepare(
    path: Path, display: str, sha: str, mapping: ColumnMapping, bp: Blueprint
) -> _Prepared:
    df = _read_table(path, display, mapping, bp)
    chk = _FileCheck(display, df)
    n = df.height
    timestamps = chk.timestamps(mapping.timestamp, mapping.timestamp_format)
    action_index = chk.actions(mapping.action, mapping.action_values, bp)
    propensity = chk.propensities(mapping.propensity)
    rewards = {label: chk.rewards(label, col, bp) for label, col in mapping.rewards.items()}
    features = chk.features(mapping, bp)
    if mapping.subject_id is not None:
        subjects = chk.subjects(mapping.subject_id)
    else:
        subjects = [f"{path.stem}:{i + 1}" for i in range(n)]
    arms = (
        chk.arms(mapping.experiment_arm, bp) if mapping.experiment_arm is not None else [None] * n
    )
    observations: dict[str, int] = {}
    for label, vals in rewards.items():
        drop_zero = _drops_zero(bp, label)
        observations[label] = sum(1 for v in vals if v is not None and not (drop_zero and v == 0.0))
    return _Prepared(
        path=path,
        display=display,
        sha256=sha,
        rows=n,
        timestamps=timestamps,
        action_index=action_index,
        propensity=propensity,
        features=features,
        subject_id=subjects,
        experiment_arm=arms,
        rewards=rewards,
        observations=observations,
    )


def _drops_zero(bp: Blueprint, label: str) -> bool:
    lb = bp.label(label)
    return lb.kind == "binary" and lb.fill_value == 0.0 and lb.aggregation in ("max", "sum")


def observation_id(use_case: str, file_sha256: str, row: int, label: str) -> str:
    """The idempotency key of an imported reward (same file, row and label: same id)."""
    raw = f"{use_case}\0{file_sha256}\0{row}\0{label}".encode()
    return "imp-" + hashlib.sha256(raw).hexdigest()[:32]


def _observation_delay_us(bp: Blueprint, label: str) -> int:
    window_us = int(bp.label(label).window_hours * 3600e6)
    return max(1, min(OBSERVATION_DELAY_US, window_us // 2))


# -- registering the blueprint -------------------------------------------------------------
def _check_registration(layout: HomeLayout, bp: Blueprint, force: bool) -> Path:
    """Where the blueprint goes; refuses when the platform would see a different one."""
    dest = layout.blueprints / f"{bp.name}.yaml"
    for d in blueprint_dirs(layout.root):
        p = d / f"{bp.name}.yaml"
        if p == dest or not p.is_file():
            continue
        try:
            other = load_blueprint(p)
        except BlueprintError:
            continue
        if other.version != bp.version:
            raise LogImportError(
                "use_case",
                f"a different blueprint named {bp.name!r} (version {other.version}) is already in {d}, "
                f"and the platform would use it instead of this one (version {bp.version}); "
                "import under another use case name",
            )
    if dest.is_file() and not force:
        try:
            registered = load_blueprint(dest)
        except BlueprintError:
            return dest
        if registered.version != bp.version:
            raise LogImportError(
                "blueprint",
                f"use case {bp.name!r} is registered with blueprint version {registered.version} "
                f"({dest}); this blueprint has version {bp.version}. Pass --force to replace it",
            )
    return dest


def _register(dest: Path, source: Path, bp: Blueprint) -> None:
    text = source.read_text()
    if dest.is_file() and dest.read_text() == text:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, dest)


# -- the import ----------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _to_dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


def import_logs(
    home: PathLike | None,
    use_case: str,
    blueprint_path: PathLike,
    mapping: PathLike | Mapping[str, Any] | ColumnMapping,
    files: Sequence[PathLike],
    *,
    force: bool = False,
) -> ImportReport:
    """Import logged bandit data into ``use_case``'s decision and observation logs.

    Validates the blueprint (its name must be ``use_case``), the mapping and every row of
    every file before writing anything; raises ``LogImportError`` (a ``LooperInputError``)
    or ``BlueprintError`` naming the field, file, row and column of the first problem.
    """
    try:
        check_use_case(use_case)
    except ValueError as e:
        raise LogImportError("use_case", str(e)) from None
    bp_source = Path(blueprint_path)
    bp = load_blueprint(bp_source)
    if bp.name != use_case:
        raise LogImportError(
            "blueprint",
            f"{bp_source} defines use case {bp.name!r}, not {use_case!r}; "
            "the blueprint's name must be the use case's",
        )
    cmap = load_mapping(mapping)
    check_mapping(cmap, bp)
    if isinstance(files, str | os.PathLike) or not files:
        raise LogImportError("files", "expected a non-empty list of CSV or Parquet files")

    layout = HomeLayout.of(home)
    paths = [Path(f) for f in files]
    shas: list[str] = []
    seen: dict[str, str] = {}
    for p in paths:
        display = str(p)
        if not p.is_file():
            what = "is not a file" if p.exists() else "does not exist"
            raise LogImportError(display, f"cannot read the file: it {what}", file=display)
        if p.suffix.lower() not in READERS:
            raise LogImportError(
                display,
                f"unsupported file type {p.suffix or '(no extension)'!r}; expected one of {', '.join(READERS)}",
                file=display,
            )
        sha = _sha256(p, display)
        if sha in seen:
            raise LogImportError(
                display, f"has the same content as {seen[sha]}, given earlier", file=display
            )
        seen[sha] = display
        shas.append(sha)

    ledger = layout.state / LEDGER_FILE
    with _locked(layout.state / "imports.lock"):
        entries = _read_ledger(ledger)
        if not force:
            for p, sha in zip(paths, shas, strict=True):
                display = str(p)
                earlier = [
                    e for e in entries if e.get("use_case") == use_case and e.get("sha256") == sha
                ]
                if not earlier:
                    continue
                e = earlier[-1]
                if e.get("status") == "complete":
                    problem = (
                        f"already imported into use case {use_case!r} on {e.get('finished_at')} "
                        f"({e.get('decisions')} decisions, from {e.get('file')}); pass --force "
                        "(force=True) to log its decisions again"
                    )
                else:
                    problem = (
                        f"an earlier import into use case {use_case!r} (started {e.get('started_at')}) "
                        "did not finish, so some of its records may be in the log; pass --force "
                        "(force=True) to import it again"
                    )
                raise LogImportError(display, problem, file=display)
        dest = _check_registration(layout, bp, force)

        prepared = [_prepare(p, str(p), sha, cmap, bp) for p, sha in zip(paths, shas, strict=True)]

        _register(dest, bp_source, bp)
        started = _now()
        new_entries = [
            {
                "use_case": use_case,
                "file": str(p.path.resolve()),
                "sha256": p.sha256,
                "rows": p.rows,
                "decisions": p.rows,
                "observations": p.observations,
                "blueprint_version": bp.version,
                "started_at": started,
                "finished_at": None,
                "status": "in_progress",
            }
            for p in prepared
        ]
        entries.extend(new_entries)
        _write_ledger(ledger, entries)

        _write_records(layout.root, use_case, bp, prepared)

        finished = _now()
        for e in new_entries:
            e["finished_at"] = finished
            e["status"] = "complete"
        _write_ledger(ledger, entries)

    return ImportReport(
        use_case=use_case,
        blueprint_version=bp.version,
        blueprint_path=str(dest),
        files=[
            FileImport(
                path=p.display,
                sha256=p.sha256,
                rows=p.rows,
                decisions=p.rows,
                observations=p.observations,
                first_timestamp=_to_dt(min(p.timestamps)),
                last_timestamp=_to_dt(max(p.timestamps)),
            )
            for p in prepared
        ],
    )


def _write_records(home: Path, use_case: str, bp: Blueprint, prepared: list[_Prepared]) -> None:
    actions = bp.decision.actions
    bp_version = bp.version
    delays = {label: _observation_delay_us(bp, label) for label in bp.label_names}
    drops_zero = {label: _drops_zero(bp, label) for label in bp.label_names}
    store = LogStore(home, durability="default")
    try:
        append = store.append
        for p in prepared:
            reward_items = list(p.rewards.items())
            for i in range(p.rows):
                ts = p.timestamps[i]
                a = p.action_index[i]
                decision_id = new_decision_id(use_case, ts)
                append(
                    DECISIONS,
                    use_case,
                    {
                        "decision_id": decision_id,
                        "use_case": use_case,
                        "subject_id": p.subject_id[i],
                        "timestamp": ts,
                        "features": p.features[i],
                        "action": actions[a],
                        "action_index": a,
                        "propensity": p.propensity[i],
                        "scores": {},
                        "model_version": None,
                        "blueprint_version": bp_version,
                        "policy_version": POLICY_VERSION,
                        "explored": False,
                        "experiment_arm": p.experiment_arm[i],
                        "assignment_probability": None,
                    },
                )
                for label, values in reward_items:
                    v = values[i]
                    if v is None or (v == 0.0 and drops_zero[label]):
                        continue
                    append(
                        OBSERVATIONS,
                        use_case,
                        {
                            "observation_id": observation_id(use_case, p.sha256, i + 1, label),
                            "decision_id": decision_id,
                            "use_case": use_case,
                            "name": label,
                            "value": float(v),
                            "timestamp": ts + delays[label],
                        },
                    )
    finally:
        store.close()


__all__ = [
    "ColumnMapping",
    "FileImport",
    "ImportReport",
    "LogImportError",
    "check_mapping",
    "import_logs",
    "load_mapping",
    "observation_id",
    "read_ledger",
]
