"""Import existing logged bandit data (CSV or Parquet) into the decision and observation logs.

``import_logs(home, use_case, blueprint_path, mapping, files, observation_files=())`` reads
each file with Polars, maps its columns onto the use case's blueprint, validates every row of
every file, and only then writes one decision record per row, one observation per non-empty
reward and one per row of the observation files through ``LogStore`` -- so a bad value
anywhere means nothing is imported.

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
    reward_timestamps: {<label>: <column>, ...}  # optional: when each reward was observed
    decision_id: <column>          # optional: keep the logs' own decision ids
    subject_id: <column>           # optional; default "<file stem>:<row>"
    experiment_arm: <column>       # optional; needs an experiment in the blueprint
    observations:                  # optional: the columns of the observation files
      decision_id: <column>        # a decision id of the imported decisions (needs decision_id above)
      name: <column>               # a label of the blueprint
      value: <column>              # a finite number; 0 or 1 for binary labels
      timestamp: <column>          # when it was observed, not before its decision
      timestamp_format: <format>   # optional; default: timestamp_format above
      observation_id: <column>     # optional idempotency key

Conventions:

- Rows are numbered from 1, the header not counted (the first data row is row 1).
- Timestamps without a time zone are taken as UTC.
- Decision ids are new Looper ids unless ``decision_id`` is mapped. Own ids must be non-empty
  text of at most 200 characters without control characters, unique within the import (all
  files together) and not already in the use case's decision log (``force=True`` skips the
  last check). ``LooperClient.log_observation`` takes ``use_case=`` for such ids.
- Each reward becomes an observation named after its label, with an ``observation_id``
  derived from the use case, the file's sha256, the row and the label -- the same file always
  yields the same ids. It is stamped at its ``reward_timestamps`` column when the label has
  one (parsed like the decision's timestamp, with ``timestamp_format``; a reward that yields an
  observation needs one, and none may be before its decision's timestamp), so the label
  window join counts it only if it falls inside the label's window, as for live logs.
  Without one it is stamped one second after the decision (half the label window if that is
  shorter), inside the window.
  A 0 reward of a binary label (filled with 0, aggregated with max or sum) yields no
  observation, as online logging only records what happened; an empty reward cell yields
  none either (the label takes its fill value).
- Observation files (``observation_files``, ``looper logs import --observations``) hold one
  event per row, each logged as given (zeros included). Every decision id must be one of the
  decisions imported by the same call, every name a label of the blueprint, every time at or
  after its decision's. Without an ``observation_id`` column the id is derived from the use
  case, the file's sha256 and the row; rows sharing an id are one observation, as for live logs.
- Float features: NaN is a missing value (the feature's default, or an error if required).
- Errors quote at most 80 characters of an offending value (a cell, a column name, a mapping
  key), with its length when it is longer; every error is one line.
- The mapping file is read like a blueprint, by ``looper_pipelines.safe_yaml``: UTF-8, at
  most 64 KiB, bounded nesting and aliases, no duplicate keys.
- A ledger, ``<home>/state/imports.json``, records each imported file (decision and
  observation files) by sha256; importing the same content into the same use case again is
  refused unless ``force=True``. A forced import logs the decisions again (under new decision
  ids, or under the same own ids) as the decision log is append-only, so use it only after the
  earlier records were removed or when duplicates are wanted.
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
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import polars as pl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from looper_pipelines.blueprints import Blueprint, BlueprintError, blueprint_dirs, load_blueprint
from looper_pipelines.blueprints.model import Feature
from looper_pipelines.client.features import FeatureEncoder
from looper_pipelines.errors import LooperInputError
from looper_pipelines.home import HomeLayout
from looper_pipelines.logs.readers import read_decisions
from looper_pipelines.logs.records import DECISIONS, OBSERVATIONS, new_decision_id
from looper_pipelines.logs.segments import check_use_case
from looper_pipelines.logs.writer import LogStore
from looper_pipelines.safe_yaml import YamlInputError, load_yaml_file, sniff_encoding

PathLike = str | os.PathLike[str]

POLICY_VERSION = "imported"
LEDGER_FILE = "imports.json"
UNIX_FORMATS = {"unix_s": 1_000_000, "unix_ms": 1_000, "unix_us": 1}
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OBSERVATION_DELAY_US = 1_000_000
MAX_ID_CHARS = 200  # own decision and observation ids
QUOTE_CHARS = 80  # at most this much of an offending value is quoted in an error
_CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"
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


def _quote(v: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(v)`` of an offending value for an error message, at most about ``limit``
    characters of it: a longer text is cut with an ellipsis and its length."""
    if isinstance(v, str) and len(v) > limit:
        return f"{v[:limit]!r}... ({len(v)} characters)"
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def _clip(text: str, limit: int = 4 * QUOTE_CHARS) -> str:
    """A message from elsewhere (a reader's error) that may quote a cell, bounded."""
    return text if len(text) <= limit else text[:limit] + "..."


# -- the mapping -------------------------------------------------------------------------
Column = Annotated[str, Field(min_length=1)]


def _check_timestamp_format(v: str | None) -> str | None:
    if v is not None and v not in UNIX_FORMATS and "%" not in v:
        raise ValueError(
            f"{_quote(v)} is neither a strptime format (with % directives) nor one of {sorted(UNIX_FORMATS)}"
        )
    return v


TimestampFormat = Annotated[str | None, AfterValidator(_check_timestamp_format)]


class ObservationMapping(BaseModel):
    """The columns of the observation files: one observed event per row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: Column
    name: Column
    value: Column
    timestamp: Column
    timestamp_format: TimestampFormat = None
    observation_id: Column | None = None

    def columns(self) -> list[tuple[str, str]]:
        """(mapping field, column) of every mapped column, in mapping order."""
        out = [
            ("observations.decision_id", self.decision_id),
            ("observations.name", self.name),
            ("observations.value", self.value),
            ("observations.timestamp", self.timestamp),
        ]
        if self.observation_id is not None:
            out.append(("observations.observation_id", self.observation_id))
        return out


class ColumnMapping(BaseModel):
    """Where the columns of the imported files go (see the module documentation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: Column
    timestamp_format: TimestampFormat = None
    action: Column
    action_values: Literal["index", "name"]
    propensity: Column
    features: dict[str, Column] = {}
    rewards: dict[str, Column] = {}
    reward_timestamps: dict[str, Column] = {}
    decision_id: Column | None = None
    subject_id: Column | None = None
    experiment_arm: Column | None = None
    observations: ObservationMapping | None = None

    def columns(self) -> list[tuple[str, str]]:
        """(mapping field, column) of every mapped column of the decision files, in mapping
        order (the observation files' columns are ``observations.columns()``)."""
        out = [
            ("timestamp", self.timestamp),
            ("action", self.action),
            ("propensity", self.propensity),
        ]
        out += [(f"features.{k}", c) for k, c in self.features.items()]
        out += [(f"rewards.{k}", c) for k, c in self.rewards.items()]
        out += [(f"reward_timestamps.{k}", c) for k, c in self.reward_timestamps.items()]
        if self.decision_id is not None:
            out.append(("decision_id", self.decision_id))
        if self.subject_id is not None:
            out.append(("subject_id", self.subject_id))
        if self.experiment_arm is not None:
            out.append(("experiment_arm", self.experiment_arm))
        return out


def _loc(loc: Sequence[object]) -> str:
    return "mapping" + "".join(f"[{p}]" if isinstance(p, int) else f".{_key(p)}" for p in loc)


def _key(k: object) -> str:
    """A mapping key in a field path: as it is when it is a short name, else quoted bounded."""
    text = str(k)
    return text if len(text) <= QUOTE_CHARS and text.isprintable() and " " not in text else _quote(k)


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
            data = load_yaml_file(p)
        except YamlInputError as e:
            if e.where == "(file)" and not p.is_file():
                raise LogImportError("mapping", f"cannot read {p}: {e.problem}") from None
            raise LogImportError("mapping", f"{p}: {e.where}: {e.problem}") from None
    if not isinstance(data, dict):
        raise LogImportError(
            "mapping", f"expected a mapping of fields{where}, got {type(data).__name__}"
        )
    try:
        return ColumnMapping.model_validate(data)
    except ValidationError as e:
        errs = e.errors(include_input=False, include_url=False)
        msgs = [f"{_loc(err['loc'])}: {_clip(err['msg'].removeprefix('Value error, '))}" for err in errs]
        first = errs[0]
        problem = _clip(first["msg"].removeprefix("Value error, ")) + where
        if len(msgs) > 1:
            problem += "; also " + "; ".join(msgs[1:4])
            if len(msgs) > 4:
                problem += f"; and {len(msgs) - 4} more"
        raise LogImportError(_loc(first["loc"]), problem) from None


def check_mapping(mapping: ColumnMapping, bp: Blueprint) -> None:
    """Cross-check a mapping against the blueprint: known features and labels, every
    required feature mapped, an experiment for ``experiment_arm``."""
    for name in mapping.features:
        if name not in bp.feature_names:
            raise LogImportError(
                f"mapping.features.{_key(name)}",
                f"{_quote(name)} is not a feature of blueprint {bp.name!r} (features: {', '.join(bp.feature_names)})",
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
                f"mapping.rewards.{_key(name)}",
                f"{_quote(name)} is not a label of blueprint {bp.name!r} (labels: {', '.join(bp.label_names)})",
            )
    for name in mapping.reward_timestamps:
        if name not in bp.label_names:
            raise LogImportError(
                f"mapping.reward_timestamps.{_key(name)}",
                f"{_quote(name)} is not a label of blueprint {bp.name!r} (labels: {', '.join(bp.label_names)})",
            )
        if name not in mapping.rewards:
            raise LogImportError(
                f"mapping.reward_timestamps.{_key(name)}",
                f"label {name!r} has no reward column; map rewards.{name} too",
            )
    if mapping.observations is not None and mapping.decision_id is None:
        raise LogImportError(
            "mapping.decision_id",
            "is required with mapping.observations: the observation files name decisions by "
            "the imported decisions' own ids",
        )
    if mapping.experiment_arm is not None and bp.experiment is None:
        raise LogImportError(
            "mapping.experiment_arm",
            f"blueprint {bp.name!r} declares no experiment, so rows cannot have arms",
        )


# -- the report --------------------------------------------------------------------------
@dataclass(frozen=True)
class FileImport:
    """One imported file: a decision file (``decisions`` = ``rows``) or an observation file
    (``decisions`` = 0; the timestamps are the events')."""

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
    observation_files: list[FileImport] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        return sum(f.decisions for f in self.files)

    @property
    def observations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in [*self.files, *self.observation_files]:
            for k, n in f.observations.items():
                out[k] = out.get(k, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for f in [*d["files"], *d["observation_files"]]:
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
        for f in self.observation_files:
            lines.append(
                f"  {f.path}: {f.rows} observations, {f.first_timestamp:%Y-%m-%d %H:%M:%S} .. "
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
    reward_timestamps: dict[str, list[int | None]]
    decision_id: pl.Series | None  # the file's own decision ids, when mapped
    observations: dict[str, int]


@dataclass
class _PreparedEvents:
    """One observation file, validated: one observation per row."""

    path: Path
    display: str
    sha256: str
    rows: int
    decision_id: list[str]
    name: list[str]
    value: list[float]
    timestamps: list[int]
    observation_id: list[str] | None
    observations: dict[str, int]


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return _clip(text.splitlines()[0])


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


def _fmt_us(us: int) -> str:
    return _to_dt(us).isoformat()


def _first(bad: pl.Series) -> tuple[int, int] | None:
    """The index of the first true value of ``bad`` (nulls are false) and how many more."""
    idx = bad.fill_null(False).arg_true()
    if idx.len() == 0:
        return None
    return int(idx[0]), idx.len() - 1


def _row_error(
    fld: str, display: str, i: int, column: str, problem: str, more: int = 0
) -> LogImportError:
    """The error for row ``i`` (from 0) of a file; ``more`` rows have the same problem."""
    tail = f" ({more} more row{'s' if more > 1 else ''} with this problem)" if more else ""
    return LogImportError(
        f"mapping.{fld}",
        f"{display} row {i + 1}, column {_quote(column)}: {problem}{tail}",
        file=display,
        row=i + 1,
        column=column,
    )


class _FileCheck:
    """Column conversion with errors naming the mapping field, the file, row and column.
    Every offending value is quoted with ``_quote`` (bounded)."""

    def __init__(self, display: str, df: pl.DataFrame) -> None:
        self.display = display
        self.df = df

    def fail_at(self, fld: str, column: str, i: int, problem: str, more: int = 0) -> NoReturn:
        raise _row_error(fld, self.display, i, column, problem, more)

    def fail_rows(
        self,
        fld: str,
        column: str,
        bad: pl.Series,
        problem: Callable[[Any], str],
        values: pl.Series | None = None,
    ) -> None:
        hit = _first(bad)
        if hit is None:
            return
        i, more = hit
        v = (values if values is not None else self.df.get_column(column))[i]
        self.fail_at(fld, column, i, problem(v), more)

    def fail_type(self, fld: str, column: str, expected: str) -> None:
        dtype = self.df.schema[column]
        raise LogImportError(
            f"mapping.{fld}",
            f"column {_quote(column)} of {self.display} holds {dtype}, expected {expected}",
            file=self.display,
            column=column,
        )

    def require(self, fld: str, column: str, what: str) -> None:
        s = self.df.get_column(column)
        self.fail_rows(fld, column, s.is_null(), lambda _: f"missing {what} (empty cell)")

    def numbers(self, fld: str, column: str) -> pl.Series:
        s = self.df.get_column(column)
        if s.dtype.is_numeric() or s.dtype in (pl.Boolean, pl.Null):
            return s.cast(pl.Float64)
        if s.dtype == pl.Utf8:
            x = s.str.strip_chars().cast(pl.Float64, strict=False)
            self.fail_rows(
                fld, column, s.is_not_null() & x.is_null(), lambda v: f"{_quote(v)} is not a number"
            )
            return x
        self.fail_type(fld, column, "numbers")
        raise AssertionError  # pragma: no cover

    def strings(self, fld: str, column: str) -> pl.Series:
        s = self.df.get_column(column)
        if s.dtype == pl.Utf8:
            return s
        try:
            return s.cast(pl.Utf8)
        except pl.exceptions.PolarsError:  # nested or binary values
            self.fail_type(fld, column, "text")
            raise AssertionError from None  # pragma: no cover

    def ids(self, fld: str, column: str, what: str) -> pl.Series:
        """Own ids: non-empty text of at most ``MAX_ID_CHARS`` characters, no control characters."""
        s = self.strings(fld, column)
        self.fail_rows(fld, column, s.is_null(), lambda _: f"missing {what} (empty cell)", s)
        self.fail_rows(
            fld,
            column,
            s.str.len_chars() > MAX_ID_CHARS,
            lambda v: f"{what} {_quote(v)} is longer than {MAX_ID_CHARS} characters",
            s,
        )
        self.fail_rows(
            fld,
            column,
            s.str.contains(_CONTROL_CHARS),
            lambda v: f"{what} {_quote(v)} contains a control character",
            s,
        )
        return s

    def fail_before(
        self, fld: str, column: str, ts: pl.Series, decided: pl.Series, what: str
    ) -> None:
        """Refuse a time (``ts``) before its decision's (``decided``), row by row."""
        hit = _first(ts < decided)
        if hit is not None:
            i, more = hit
            self.fail_at(
                fld,
                column,
                i,
                f"{what} {_fmt_us(ts[i])} is before the timestamp of its decision "
                f"({_fmt_us(decided[i])})",
                more,
            )

    # -- the mapped fields -------------------------------------------------------------
    def timestamps(
        self,
        fld: str,
        column: str,
        fmt: str | None,
        fmt_field: str = "timestamp_format",
        *,
        required: bool = True,
    ) -> pl.Series:
        """Microseconds since the epoch (Int64); an empty cell is an error when ``required``
        and null otherwise. ``fmt`` applies to text and numbers (date and datetime columns
        are taken as they are)."""
        s = self.df.get_column(column)
        if required:
            self.require(fld, column, "timestamp")
        if s.dtype == pl.Null:  # no value at all (an empty Parquet column)
            return pl.Series(column, [None] * s.len(), dtype=pl.Int64)
        native = s.dtype == pl.Date or isinstance(s.dtype, pl.Datetime)  # any format fits
        if not native and (fmt in UNIX_FORMATS or (s.dtype.is_numeric() and fmt is None)):
            if fmt is None:
                raise LogImportError(
                    f"mapping.{fmt_field}",
                    f"column {_quote(column)} of {self.display} holds numbers ({s.dtype}); set {fmt_field} "
                    f"to one of {sorted(UNIX_FORMATS)}",
                    file=self.display,
                    column=column,
                )
            x = self.numbers(fld, column)
            self.fail_rows(
                fld, column, ~x.is_finite(), lambda v: f"timestamp {_quote(v)} is not finite"
            )
            us = (x * UNIX_FORMATS[fmt]).round(0).cast(pl.Int64)
        else:
            if s.dtype == pl.Utf8:
                text = s.str.strip_chars()
                if (
                    fmt is None
                    and s.null_count() < s.len()
                    and text.cast(pl.Float64, strict=False).null_count() == s.null_count()
                ):
                    raise LogImportError(
                        f"mapping.{fmt_field}",
                        f"column {_quote(column)} of {self.display} holds numbers; set {fmt_field} "
                        f"to one of {sorted(UNIX_FORMATS)}",
                        file=self.display,
                        column=column,
                    )
                hint = f"format {fmt!r}" if fmt else f"the format of the first row; set {fmt_field}"
                try:
                    parsed = text.str.to_datetime(format=fmt, strict=False, time_unit="us")
                except pl.exceptions.PolarsError:  # no format given and none could be inferred
                    hint = f"no format could be inferred; set {fmt_field}"
                    parsed = pl.Series(column, [None] * s.len(), dtype=pl.Datetime("us"))
                self.fail_rows(
                    fld,
                    column,
                    s.is_not_null() & parsed.is_null(),
                    lambda v: f"cannot parse timestamp {_quote(v)} ({hint})",
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
            lambda v: f"timestamp {_quote(v)} is before 1970 or after 3000 (wrong unit or format?)",
        )
        return us.cast(pl.Int64)

    def actions(self, column: str, values: Literal["index", "name"], bp: Blueprint) -> list[int]:
        fld = "action"
        actions = bp.decision.actions
        k = len(actions)
        self.require(fld, column, "action")
        s = self.df.get_column(column)
        if values == "name":
            names = self.strings(fld, column)
            self.fail_rows(
                fld,
                column,
                ~names.is_in(actions),
                lambda v: (
                    f"{_quote(v)} is not an action of blueprint {bp.name!r} (actions: {_preview(actions)})"
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
                lambda v: f"action index {_quote(v)} is not an integer",
            )
            x = f.cast(pl.Int64)
        self.fail_rows(
            fld,
            column,
            (x < 0) | (x >= k),
            lambda v: (
                f"action index {_quote(v)} is out of range: blueprint {bp.name!r} has {k} actions (0..{k - 1})"
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
            lambda v: f"propensity {_quote(v)} is outside (0, 1]",
        )
        return [float(v) for v in x.to_list()]

    def rewards(self, label: str, column: str, bp: Blueprint) -> pl.Series:
        fld = f"rewards.{label}"
        x = self.numbers(fld, column)
        self.fail_rows(fld, column, ~x.is_finite(), lambda v: f"reward {_quote(v)} is not finite")
        if bp.label(label).kind == "binary":
            self.fail_rows(
                fld,
                column,
                ~x.is_in([0.0, 1.0]),
                lambda v: f"label {label!r} is binary: expected 0 or 1, got {_quote(v)}",
            )
        return x

    def reward_timestamps(
        self,
        label: str,
        column: str,
        mapping: ColumnMapping,
        rewards: pl.Series,
        decided: pl.Series,
        bp: Blueprint,
    ) -> list[int | None]:
        """When each reward of ``label`` was observed: needed for every reward that yields an
        observation, never before the decision."""
        fld = f"reward_timestamps.{label}"
        ts = self.timestamps(fld, column, mapping.timestamp_format, required=False)
        logged = rewards.is_not_null()
        if _drops_zero(bp, label):
            logged = logged & (rewards != 0.0)
        reward_column = mapping.rewards[label]
        self.fail_rows(
            fld,
            column,
            logged & ts.is_null(),
            lambda v: (
                f"missing reward timestamp (empty cell) for the reward {_quote(v)} "
                f"of label {label!r} in column {reward_column!r}"
            ),
            rewards,
        )
        self.fail_before(fld, column, ts, decided, "reward timestamp")
        return ts.to_list()

    def feature_values(self, f: Feature, column: str) -> list[Any]:
        fld = f"features.{f.name}"
        s = self.df.get_column(column)
        if f.type == "category":
            return self.strings(fld, column).to_list()
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
                elif name in row:
                    # the encoder quotes the value whole: quote it bounded
                    whole = repr(row[name])
                    if len(whole) > QUOTE_CHARS:
                        problem = problem.replace(whole, _quote(row[name]))
                raise _row_error(
                    f"features.{name}", self.display, i, column, _clip(problem, 2000)
                ) from None
        if not names:
            out = [normalise({}) for _ in range(self.df.height)]
        return out

    def subjects(self, column: str) -> list[str]:
        s = self.strings("subject_id", column)
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
        s = self.strings("experiment_arm", column)
        self.fail_rows(
            "experiment_arm",
            column,
            s.is_not_null() & ~s.is_in(arms),
            lambda v: (
                f"{_quote(v)} is not an experiment arm of blueprint {bp.name!r} (arms: {', '.join(arms)})"
            ),
            s,
        )
        return s.to_list()

    def decision_ids(self, column: str) -> pl.Series:
        """The file's own decision ids: valid ids, none repeated in the file."""
        fld = "decision_id"
        s = self.ids(fld, column, "decision id")
        self.fail_rows(
            fld,
            column,
            ~s.is_first_distinct(),
            lambda v: (
                f"decision id {_quote(v)} is repeated: it is also in row "
                f"{int((s == v).arg_true()[0]) + 1}; decision ids must be unique"
            ),
            s,
        )
        return s

    # -- the observation files -----------------------------------------------------------
    def event_labels(self, om: ObservationMapping, bp: Blueprint) -> pl.Series:
        fld, column = "observations.name", om.name
        s = self.strings(fld, column)
        self.fail_rows(fld, column, s.is_null(), lambda _: "missing label name (empty cell)", s)
        labels = bp.label_names
        self.fail_rows(
            fld,
            column,
            ~s.is_in(labels),
            lambda v: (
                f"{_quote(v)} is not a label of blueprint {bp.name!r} (labels: {', '.join(labels)})"
            ),
            s,
        )
        return s

    def event_values(self, om: ObservationMapping, names: pl.Series, bp: Blueprint) -> pl.Series:
        fld, column = "observations.value", om.value
        self.require(fld, column, "value")
        x = self.numbers(fld, column)
        self.fail_rows(fld, column, ~x.is_finite(), lambda v: f"value {_quote(v)} is not finite")
        binary = [n for n in bp.label_names if bp.label(n).kind == "binary"]
        hit = _first(names.is_in(binary) & ~x.is_in([0.0, 1.0]))
        if hit is not None:
            i, more = hit
            self.fail_at(
                fld,
                column,
                i,
                f"label {names[i]!r} is binary: expected 0 or 1, got {_quote(x[i])}",
                more,
            )
        return x


def _read_columns(
    path: Path, display: str, fields: list[tuple[str, str]], text: set[str]
) -> pl.DataFrame:
    """The mapped columns (``fields``: mapping field, column) of a CSV or Parquet file; in a
    CSV, the ``text`` columns are read as text."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise LogImportError(
            display,
            f"unsupported file type {path.suffix or '(no extension)'!r}; expected one of {', '.join(READERS)}",
            file=display,
        )
    if kind == "csv":
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError as e:
            raise LogImportError(display, f"cannot read the file: {e.strerror or e}", file=display) from None
        wrong = sniff_encoding(head)
        if wrong is not None:
            raise LogImportError(display, f"cannot read as CSV: {wrong}", file=display)
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
    for fld, col in fields:
        if col not in present:
            raise LogImportError(
                f"mapping.{fld}",
                f"column {_quote(col)} not found in {display} (columns: {_preview([_quote(c) for c in columns], 20)})",
                file=display,
                column=col,
            )
    needed = list(dict.fromkeys(col for _, col in fields))
    try:
        if kind == "csv":
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


def _read_table(path: Path, display: str, mapping: ColumnMapping, bp: Blueprint) -> pl.DataFrame:
    """The mapped columns of a decision file."""
    # read text-like fields as text: category values such as "007" keep their zeros
    text: set[str] = set()
    if mapping.timestamp_format not in UNIX_FORMATS:
        text.add(mapping.timestamp)
        text |= set(mapping.reward_timestamps.values())
    by_name = {f.name: f for f in bp.features}
    text |= {c for n, c in mapping.features.items() if by_name[n].type == "category"}
    text |= {
        c
        for c in (mapping.subject_id, mapping.experiment_arm, mapping.decision_id)
        if c is not None
    }
    if mapping.action_values == "name":
        text.add(mapping.action)
    return _read_columns(path, display, mapping.columns(), text)


def _prepare(
    path: Path, display: str, sha: str, mapping: ColumnMapping, bp: Blueprint
) -> _Prepared:
    df = _read_table(path, display, mapping, bp)
    chk = _FileCheck(display, df)
    n = df.height
    decided = chk.timestamps("timestamp", mapping.timestamp, mapping.timestamp_format)
    action_index = chk.actions(mapping.action, mapping.action_values, bp)
    propensity = chk.propensities(mapping.propensity)
    rewards = {label: chk.rewards(label, col, bp) for label, col in mapping.rewards.items()}
    reward_ts = {
        label: chk.reward_timestamps(label, col, mapping, rewards[label], decided, bp)
        for label, col in mapping.reward_timestamps.items()
    }
    features = chk.features(mapping, bp)
    decision_ids = (
        chk.decision_ids(mapping.decision_id) if mapping.decision_id is not None else None
    )
    if mapping.subject_id is not None:
        subjects = chk.subjects(mapping.subject_id)
    else:
        subjects = [f"{path.stem}:{i + 1}" for i in range(n)]
    arms = (
        chk.arms(mapping.experiment_arm, bp) if mapping.experiment_arm is not None else [None] * n
    )
    observations: dict[str, int] = {}
    for label, x in rewards.items():
        logged = x.is_not_null()
        if _drops_zero(bp, label):
            logged = logged & (x != 0.0)
        observations[label] = int(logged.fill_null(False).sum())
    return _Prepared(
        path=path,
        display=display,
        sha256=sha,
        rows=n,
        timestamps=[int(v) for v in decided.to_list()],
        action_index=action_index,
        propensity=propensity,
        features=features,
        subject_id=subjects,
        experiment_arm=arms,
        rewards={label: x.to_list() for label, x in rewards.items()},
        reward_timestamps=reward_ts,
        decision_id=decision_ids,
        observations=observations,
    )


def _check_decision_ids(
    prepared: list[_Prepared], column: str, home: Path, use_case: str, force: bool
) -> None:
    """Own decision ids: unique across the files of the import, and (unless ``force``) not
    already in the use case's decision log."""
    fld = "decision_id"
    for k, p in enumerate(prepared):
        assert p.decision_id is not None
        for q in prepared[:k]:
            assert q.decision_id is not None
            hit = _first(p.decision_id.is_in(q.decision_id.implode()))
            if hit is not None:
                i, more = hit
                v = p.decision_id[i]
                j = int((q.decision_id == v).arg_true()[0])
                raise _row_error(
                    fld,
                    p.display,
                    i,
                    column,
                    f"decision id {_quote(v)} is also in {q.display} row {j + 1}; decision ids "
                    "must be unique within an import",
                    more,
                )
    if force:
        return
    existing = read_decisions(home, use_case).get_column("decision_id")
    if existing.len() == 0:
        return
    known = existing.implode()
    for p in prepared:
        assert p.decision_id is not None
        hit = _first(p.decision_id.is_in(known))
        if hit is not None:
            i, more = hit
            raise _row_error(
                fld,
                p.display,
                i,
                column,
                f"decision id {_quote(p.decision_id[i])} is already in the decision log of use "
                f"case {use_case!r}; pass --force (force=True) to log it again",
                more,
            )


def _events_format(mapping: ColumnMapping) -> tuple[str | None, str]:
    """The timestamp format of the observation files, and the mapping field that sets it."""
    assert mapping.observations is not None
    if mapping.observations.timestamp_format is not None:
        return mapping.observations.timestamp_format, "observations.timestamp_format"
    if mapping.timestamp_format is not None:
        return mapping.timestamp_format, "timestamp_format"
    return None, "observations.timestamp_format"


def _prepare_events(
    path: Path,
    display: str,
    sha: str,
    mapping: ColumnMapping,
    bp: Blueprint,
    decision_ids: pl.Series,
    decided: pl.Series,
) -> _PreparedEvents:
    """One observation file, checked against the decisions of the same import
    (``decision_ids`` and their timestamps ``decided``)."""
    om = mapping.observations
    assert om is not None
    fmt, fmt_field = _events_format(mapping)
    text = {om.decision_id, om.name}
    if om.observation_id is not None:
        text.add(om.observation_id)
    if fmt not in UNIX_FORMATS:
        text.add(om.timestamp)
    df = _read_columns(path, display, om.columns(), text)
    chk = _FileCheck(display, df)

    fld, column = "observations.decision_id", om.decision_id
    ids = chk.strings(fld, column)
    chk.fail_rows(fld, column, ids.is_null(), lambda _: "missing decision id (empty cell)", ids)
    chk.fail_rows(
        fld,
        column,
        ~ids.is_in(decision_ids.implode()),
        lambda v: (
            f"decision id {_quote(v)} is not among the decisions of this import "
            f"(mapping.decision_id); observations can only be imported with their decisions"
        ),
        ids,
    )
    names = chk.event_labels(om, bp)
    values = chk.event_values(om, names, bp)
    ts = chk.timestamps("observations.timestamp", om.timestamp, fmt, fmt_field)
    their = ids.replace_strict(decision_ids, decided, default=None, return_dtype=pl.Int64)
    hit = _first(ts < their)
    if hit is not None:
        i, more = hit
        chk.fail_at(
            "observations.timestamp",
            om.timestamp,
            i,
            f"observation timestamp {_fmt_us(ts[i])} is before the timestamp of its decision "
            f"{_quote(ids[i])} ({_fmt_us(their[i])})",
            more,
        )
    oids = (
        chk.ids("observations.observation_id", om.observation_id, "observation id")
        if om.observation_id is not None
        else None
    )
    name_list = names.to_list()
    counts = Counter(name_list)
    return _PreparedEvents(
        path=path,
        display=display,
        sha256=sha,
        rows=df.height,
        decision_id=ids.to_list(),
        name=name_list,
        value=[float(v) for v in values.to_list()],
        timestamps=[int(v) for v in ts.to_list()],
        observation_id=oids.to_list() if oids is not None else None,
        observations={n: counts[n] for n in bp.label_names if n in counts},
    )


def _drops_zero(bp: Blueprint, label: str) -> bool:
    lb = bp.label(label)
    return lb.kind == "binary" and lb.fill_value == 0.0 and lb.aggregation in ("max", "sum")


def observation_id(use_case: str, file_sha256: str, row: int, label: str) -> str:
    """The idempotency key of an imported reward (same file, row and label: same id)."""
    raw = f"{use_case}\0{file_sha256}\0{row}\0{label}".encode()
    return "imp-" + hashlib.sha256(raw).hexdigest()[:32]


def event_observation_id(use_case: str, file_sha256: str, row: int) -> str:
    """The idempotency key of a row of an observation file without an ``observation_id``
    column (same file and row: same id)."""
    raw = f"{use_case}\0{file_sha256}\0{row}\0\0observation file".encode()
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


def _check_file(p: Path, seen: dict[str, str]) -> str:
    """The sha256 of a file to import; refuses a missing file, an unknown type and content
    given twice in one import (``seen``: sha256 -> the file that had it)."""
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
    return sha


def _check_not_imported(entries: list[dict[str, Any]], use_case: str, p: Path, sha: str) -> None:
    display = str(p)
    earlier = [e for e in entries if e.get("use_case") == use_case and e.get("sha256") == sha]
    if not earlier:
        return
    e = earlier[-1]
    if e.get("status") == "complete":
        if e.get("kind") == "observations":
            n = sum((e.get("observations") or {}).values())
            what, again = f"{n} observations", "import its observations again"
        else:
            what, again = f"{e.get('decisions')} decisions", "log its decisions again"
        problem = (
            f"already imported into use case {use_case!r} on {e.get('finished_at')} "
            f"({what}, from {e.get('file')}); pass --force (force=True) to {again}"
        )
    else:
        problem = (
            f"an earlier import into use case {use_case!r} (started {e.get('started_at')}) "
            "did not finish, so some of its records may be in the log; pass --force "
            "(force=True) to import it again"
        )
    raise LogImportError(display, problem, file=display)


def import_logs(
    home: PathLike | None,
    use_case: str,
    blueprint_path: PathLike,
    mapping: PathLike | Mapping[str, Any] | ColumnMapping,
    files: Sequence[PathLike],
    *,
    observation_files: Sequence[PathLike] = (),
    force: bool = False,
) -> ImportReport:
    """Import logged bandit data into ``use_case``'s decision and observation logs.

    ``files`` hold one decision per row; ``observation_files`` (optional, with
    ``mapping.observations``) one observation per row, of the decisions in ``files``.
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
    if isinstance(observation_files, str | os.PathLike):
        raise LogImportError("observation_files", "expected a list of CSV or Parquet files")
    if observation_files and cmap.observations is None:
        raise LogImportError(
            "mapping.observations",
            "observation files were given, but the mapping has no observations section "
            "(its decision_id, name, value and timestamp columns)",
        )

    layout = HomeLayout.of(home)
    paths = [Path(f) for f in files]
    obs_paths = [Path(f) for f in observation_files]
    seen: dict[str, str] = {}
    shas = [_check_file(p, seen) for p in paths]
    obs_shas = [_check_file(p, seen) for p in obs_paths]

    ledger = layout.state / LEDGER_FILE
    with _locked(layout.state / "imports.lock"):
        entries = _read_ledger(ledger)
        if not force:
            for p, sha in zip([*paths, *obs_paths], [*shas, *obs_shas], strict=True):
                _check_not_imported(entries, use_case, p, sha)
        dest = _check_registration(layout, bp, force)

        prepared = [_prepare(p, str(p), sha, cmap, bp) for p, sha in zip(paths, shas, strict=True)]
        if cmap.decision_id is not None:
            _check_decision_ids(prepared, cmap.decision_id, layout.root, use_case, force)
        events: list[_PreparedEvents] = []
        if obs_paths:
            ids = pl.concat([p.decision_id for p in prepared if p.decision_id is not None])
            decided = pl.Series([t for p in prepared for t in p.timestamps], dtype=pl.Int64)
            events = [
                _prepare_events(p, str(p), sha, cmap, bp, ids, decided)
                for p, sha in zip(obs_paths, obs_shas, strict=True)
            ]

        _register(dest, bp_source, bp)
        started = _now()
        new_entries = [
            {
                "use_case": use_case,
                "kind": "decisions",
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
        ] + [
            {
                "use_case": use_case,
                "kind": "observations",
                "file": str(ev.path.resolve()),
                "sha256": ev.sha256,
                "rows": ev.rows,
                "decisions": 0,
                "observations": ev.observations,
                "blueprint_version": bp.version,
                "started_at": started,
                "finished_at": None,
                "status": "in_progress",
            }
            for ev in events
        ]
        entries.extend(new_entries)
        _write_ledger(ledger, entries)

        _write_records(layout.root, use_case, bp, prepared, events)

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
        observation_files=[
            FileImport(
                path=ev.display,
                sha256=ev.sha256,
                rows=ev.rows,
                decisions=0,
                observations=ev.observations,
                first_timestamp=_to_dt(min(ev.timestamps)),
                last_timestamp=_to_dt(max(ev.timestamps)),
            )
            for ev in events
        ],
    )


def _write_records(
    home: Path,
    use_case: str,
    bp: Blueprint,
    prepared: list[_Prepared],
    events: Sequence[_PreparedEvents] = (),
) -> None:
    actions = bp.decision.actions
    bp_version = bp.version
    delays = {label: _observation_delay_us(bp, label) for label in bp.label_names}
    drops_zero = {label: _drops_zero(bp, label) for label in bp.label_names}
    store = LogStore(home, durability="default")
    try:
        append = store.append
        for p in prepared:
            # (label, rewards, their timestamps or None: a fixed delay after the decision)
            reward_items = [
                (label, values, p.reward_timestamps.get(label))
                for label, values in p.rewards.items()
            ]
            own_ids = p.decision_id.to_list() if p.decision_id is not None else None
            for i in range(p.rows):
                ts = p.timestamps[i]
                a = p.action_index[i]
                decision_id = own_ids[i] if own_ids is not None else new_decision_id(use_case, ts)
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
                for label, values, stamps in reward_items:
                    v = values[i]
                    if v is None or (v == 0.0 and drops_zero[label]):
                        continue
                    observed = stamps[i] if stamps is not None else None
                    append(
                        OBSERVATIONS,
                        use_case,
                        {
                            "observation_id": observation_id(use_case, p.sha256, i + 1, label),
                            "decision_id": decision_id,
                            "use_case": use_case,
                            "name": label,
                            "value": float(v),
                            "timestamp": observed if observed is not None else ts + delays[label],
                        },
                    )
        for ev in events:
            oids = ev.observation_id
            for i in range(ev.rows):
                append(
                    OBSERVATIONS,
                    use_case,
                    {
                        "observation_id": (
                            oids[i]
                            if oids is not None
                            else event_observation_id(use_case, ev.sha256, i + 1)
                        ),
                        "decision_id": ev.decision_id[i],
                        "use_case": use_case,
                        "name": ev.name[i],
                        "value": ev.value[i],
                        "timestamp": ev.timestamps[i],
                    },
                )
    finally:
        store.close()


__all__ = [
    "ColumnMapping",
    "FileImport",
    "ImportReport",
    "LogImportError",
    "ObservationMapping",
    "check_mapping",
    "event_observation_id",
    "import_logs",
    "load_mapping",
    "observation_id",
    "read_ledger",
]
