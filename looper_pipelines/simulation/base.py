"""Shared machinery of the simulated products: population, clock, event queue, traffic.

A :class:`Simulator` owns a synthetic population whose features match a blueprint, a
ground-truth outcome model (the expected value of every label under every action, as a
function of the features the decision sees) and a delivery model for observations (delays,
drops, duplicates). :meth:`Simulator.run` drives daily traffic through a real
``LooperClient``: one decision per visit, in simulated-time order, with observations
flushed from an event queue as simulated time passes.

Because the truth is known, any policy can be scored exactly in expectation
(:meth:`Simulator.policy_value`), which is what the platform's off-policy estimates,
tuned policies and promotions are measured against.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from typing import Any, ClassVar, Protocol

import numpy as np

from looper_pipelines.blueprints.loader import PACKAGED_CATALOG, load_blueprint
from looper_pipelines.blueprints.model import Blueprint

SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US
DAY_US = 24 * HOUR_US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC

Rows = Sequence[Mapping[str, Any]]
Columns = dict[str, np.ndarray]
PolicyLike = np.ndarray | Callable[[list[dict[str, Any]]], np.ndarray]


# -- time ---------------------------------------------------------------------------------
class SimClock:
    """A settable clock: calling it returns the current simulated time in epoch
    microseconds. Pass it to ``LooperClient.local(home, clock=clock)``."""

    def __init__(self, now_us: int = 0) -> None:
        self.now_us = int(now_us)

    def __call__(self) -> int:
        return self.now_us

    def set(self, now_us: int) -> None:
        self.now_us = int(now_us)

    def advance(self, delta_us: int) -> None:
        self.now_us += int(delta_us)

    def __repr__(self) -> str:
        return f"SimClock({to_datetime(self.now_us).isoformat()})"


def to_us(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // timedelta(microseconds=1)


def to_datetime(t_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(t_us))


def resolve_start(start: datetime | date | str | int | None) -> int:
    """Start of the simulation as epoch microseconds, truncated to UTC midnight.

    Accepts a datetime (naive means UTC), a date, an ISO string or epoch microseconds;
    None means :data:`DEFAULT_START`.
    """
    if start is None:
        t = DEFAULT_START
    elif isinstance(start, datetime):
        t = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    elif isinstance(start, date):
        t = datetime(start.year, start.month, start.day, tzinfo=UTC)
    elif isinstance(start, str):
        t = datetime.fromisoformat(start)
        t = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    elif isinstance(start, int) and not isinstance(start, bool):
        t = to_datetime(start)
    else:
        raise TypeError(
            f"start must be a datetime, date, ISO string or epoch microseconds, got {start!r}"
        )
    t = t.astimezone(UTC)
    return to_us(datetime(t.year, t.month, t.day, tzinfo=UTC))


# -- observation delivery --------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryConfig:
    """How outcomes reach ``log_observation``.

    The delay after the decision is lognormal with spread ``delay_sigma``; its median is set
    per label so that ``late_fraction`` of the delays exceed the label's window. A share
    ``drop_rate`` of positive outcomes is never reported; a share ``duplicate_rate`` is
    reported twice with the same observation id (the copy ``duplicate_delay_s`` seconds
    later on average). At the end, observations due up to ``flush_days`` after the last
    day are delivered; later ones are counted as beyond the horizon.
    """

    drop_rate: float = 0.03
    duplicate_rate: float = 0.02
    late_fraction: float = 0.05
    delay_sigma: float = 1.0
    duplicate_delay_s: float = 300.0
    flush_days: float = 3.0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate", "late_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if self.late_fraction <= 0.0:
            raise ValueError("late_fraction must be positive")
        if self.delay_sigma <= 0 or self.duplicate_delay_s < 0 or self.flush_days < 0:
            raise ValueError("delay_sigma must be positive, duplicate_delay_s and flush_days >= 0")

    def median_delay_hours(self, window_hours: float) -> float:
        z = NormalDist().inv_cdf(1.0 - self.late_fraction)
        return window_hours * math.exp(-z * self.delay_sigma)

    def sample_delays_us(self, window_hours: float, rng: np.random.Generator, n: int) -> np.ndarray:
        mu = math.log(self.median_delay_hours(window_hours) * HOUR_US)
        return np.maximum(np.exp(rng.normal(mu, self.delay_sigma, n)), SECOND_US).astype(np.int64)


@dataclass(frozen=True, order=True)
class PendingObservation:
    time_us: int
    seq: int
    decision_id: str = field(compare=False)
    name: str = field(compare=False)
    value: float = field(compare=False)
    observation_id: str = field(compare=False)
    duplicate: bool = field(compare=False, default=False)
    late: bool = field(compare=False, default=False)


class EventQueue:
    """Observations waiting for their delivery time, popped in time order (ties in push
    order)."""

    def __init__(self) -> None:
        self._heap: list[PendingObservation] = []
        self._seq = 0

    def push(
        self,
        time_us: int,
        decision_id: str,
        name: str,
        value: float,
        observation_id: str,
        *,
        duplicate: bool = False,
        late: bool = False,
    ) -> None:
        self._seq += 1
        heapq.heappush(
            self._heap,
            PendingObservation(
                int(time_us), self._seq, decision_id, name, value, observation_id, duplicate, late
            ),
        )

    def pop_until(self, time_us: int) -> Iterator[PendingObservation]:
        """Pop every observation due at or before ``time_us``, earliest first."""
        heap = self._heap
        while heap and heap[0].time_us <= time_us:
            yield heapq.heappop(heap)

    def peek_time(self) -> int | None:
        return self._heap[0].time_us if self._heap else None

    def clear(self) -> list[PendingObservation]:
        out = sorted(self._heap)
        self._heap = []
        return out

    def __len__(self) -> int:
        return len(self._heap)


# -- populations and rows --------------------------------------------------------------------
@dataclass
class Population:
    """Subjects as columns: ``ids`` and latent attributes (one array per name, same length)."""

    ids: np.ndarray
    attrs: Columns

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def append(self, other: Population) -> None:
        self.ids = np.concatenate([self.ids, other.ids])
        for k in self.attrs:
            self.attrs[k] = np.concatenate([self.attrs[k], other.attrs[k]])


@dataclass
class Visits:
    """The decisions of one simulated day for a set of subjects, ordered by time."""

    subject_ids: np.ndarray  # str
    offsets_us: np.ndarray  # int64, time since the day's midnight, non-decreasing
    columns: Columns  # features as the model sees them (defaults filled, NaN for null)
    present: dict[str, np.ndarray]  # bool per feature: the key is sent (else omitted)

    @property
    def n(self) -> int:
        return int(self.subject_ids.shape[0])

    def __len__(self) -> int:
        return self.n

    def rows(self) -> list[dict[str, Any]]:
        return columns_to_rows(self.columns, self.present)


class FeatureCodec:
    """Converts between feature dicts (as sent to ``get_decision``) and columns.

    Columns hold what the model sees: a missing key takes the blueprint default, a null
    default (or an explicit None) becomes NaN; category columns are string arrays.
    """

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        self.features = list(blueprint.features)
        self.names = [f.name for f in self.features]

    def to_columns(self, rows: Rows) -> Columns:
        out: Columns = {}
        for f in self.features:
            default = f.default if not f.required else None
            vals = [r.get(f.name, default) for r in rows]
            if f.type == "category":
                fill = default if isinstance(default, str) else ""
                out[f.name] = np.array(
                    [fill if v is None else v for v in vals], dtype=object
                ).astype(str)
            else:
                out[f.name] = np.array(
                    [np.nan if v is None else float(v) for v in vals], dtype=np.float64
                )
        return out

    def fill_missing(self, columns: Columns, present: Mapping[str, np.ndarray]) -> Columns:
        """Columns as the model sees them: omitted values replaced by the default."""
        out = dict(columns)
        for f in self.features:
            mask = present.get(f.name)
            if mask is None or bool(mask.all()):
                continue
            if f.required:
                raise ValueError(f"required feature {f.name!r} cannot be omitted")
            col = np.array(columns[f.name], copy=True)
            if f.type == "category":
                col[~mask] = f.default if isinstance(f.default, str) else ""
            else:
                col = col.astype(np.float64)
                col[~mask] = np.nan if f.default is None else float(f.default)
            out[f.name] = col
        return out


def columns_to_rows(
    columns: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Feature dicts with native Python values; keys not ``present`` are omitted. The
    column order (dict order) becomes the key order."""
    names = list(columns)
    n = len(next(iter(columns.values()))) if names else 0
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name in names:
        col = columns[name]
        if col.dtype.kind in "US":
            values: list[Any] = [str(v) for v in col.tolist()]
        elif col.dtype.kind == "b":
            values = [bool(v) for v in col.tolist()]
        elif col.dtype.kind in "iu":
            values = [int(v) for v in col.tolist()]
        else:
            values = [float(v) for v in col.tolist()]
        mask = present.get(name)
        if mask is None:
            for r, v in zip(rows, values, strict=True):
                r[name] = v
        else:
            for r, v, keep in zip(rows, values, mask.tolist(), strict=True):
                if keep:
                    r[name] = v
    return rows


def validate_row(row: Mapping[str, Any], blueprint: Blueprint) -> list[str]:
    """Problems of one feature dict against the blueprint (empty when valid): unknown or
    missing required keys, wrong Python types, categories and ranges."""
    problems: list[str] = []
    known = {f.name for f in blueprint.features}
    problems += [f"{k}: unknown feature" for k in row if k not in known]
    for f in blueprint.features:
        if f.name not in row:
            if f.required:
                problems.append(f"{f.name}: required but missing")
            continue
        v = row[f.name]
        if f.type == "category":
            if not isinstance(v, str) or v not in (f.categories or []):
                problems.append(f"{f.name}: {v!r} is not one of {f.categories}")
            continue
        if f.type == "bool":
            if not isinstance(v, bool):
                problems.append(f"{f.name}: {v!r} is not a bool")
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            problems.append(f"{f.name}: {v!r} is not a finite number")
            continue
        if f.type == "int" and not isinstance(v, int):
            problems.append(f"{f.name}: {v!r} is not an int")
        if f.minimum is not None and v < f.minimum:
            problems.append(f"{f.name}: {v!r} < minimum {f.minimum}")
        if f.maximum is not None and v > f.maximum:
            problems.append(f"{f.name}: {v!r} > maximum {f.maximum}")
    return problems


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyEvaluation:
    """The exact expected value of a policy on a sample of decisions.

    ``value`` is the mean expected objective per decision; ``guardrail_value`` the mean of
    the guardrail label under the policy minus its mean under always-``baseline_action``
    (None without a guardrail); ``label_means`` the expected label means; ``action_shares``
    the mean probability of each action.
    """

    value: float
    guardrail_value: float | None
    guardrail_bound: float | None
    label_means: dict[str, float]
    action_shares: dict[str, float]
    n: int
    day: int

    @property
    def satisfies_guardrail(self) -> bool:
        if self.guardrail_value is None or self.guardrail_bound is None:
            return True
        return self.guardrail_value <= self.guardrail_bound + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"satisfies_guardrail": self.satisfies_guardrail}


@dataclass
class SimulationReport:
    """What a simulation run sent through the SDK (JSON-serialisable with ``to_dict``).

    ``observations`` counts distinct observations logged (first deliveries), ``duplicates``
    the second copies sent with the same observation id, ``dropped`` positive outcomes
    never reported, ``late`` observations logged after their label window, and
    ``beyond_horizon`` outcomes still pending when the simulation stopped flushing.
    """

    use_case: str
    seed: int
    subjects: int
    subjects_total: int
    days: int
    start: str
    end: str
    start_us: int
    end_us: int
    decisions: int = 0
    observations: int = 0
    duplicates: int = 0
    dropped: int = 0
    late: int = 0
    beyond_horizon: int = 0
    positives: dict[str, int] = field(default_factory=dict)
    observations_by_label: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    decisions_by_day: list[int] = field(default_factory=list)
    expected_objective: float = 0.0
    expected_guardrail: float | None = None
    elapsed_seconds: float = 0.0

    @property
    def deliveries(self) -> int:
        """Calls made to ``log_observation`` (first deliveries plus duplicates)."""
        return self.observations + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"deliveries": self.deliveries}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class DecisionClient(Protocol):
    """The part of ``LooperClient`` the simulator uses."""

    def get_decision(self, use_case: str, subject_id: str, features: Mapping[str, Any]) -> Any: ...

    def log_observation(
        self,
        decision_id: str,
        name: str,
        value: float | int | bool,
        observation_id: str | None = None,
    ) -> Any: ...


# -- helpers ------------------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def packaged_blueprint(name: str) -> Blueprint:
    return load_blueprint(PACKAGED_CATALOG / f"{name}.yaml")


# -- the simulator ------------------------------------------------------------------------
class Simulator(ABC):
    """A simulated product for one use case.

    Subclasses define the population (``_new_subjects``, ``_drift``), how a visit turns
    into features (``_visits``) and the ground truth (``_truth``). Everything is seeded:
    the same seed gives the same population, visits, outcomes and delivery.
    """

    use_case: ClassVar[str]
    #: mean daily visit probability, used to size evaluation samples
    new_subjects_per_day: ClassVar[float] = 0.01

    def __init__(
        self,
        seed: int = 0,
        blueprint: Blueprint | None = None,
        delivery: DeliveryConfig | None = None,
    ) -> None:
        self.seed = int(seed)
        self.blueprint = blueprint if blueprint is not None else packaged_blueprint(self.use_case)
        self._check_blueprint()
        self.delivery = delivery or DeliveryConfig()
        self.codec = FeatureCodec(self.blueprint)
        self.actions: list[str] = list(self.blueprint.decision.actions)
        self.labels: list[str] = self.blueprint.label_names
        self.weights: dict[str, float] = self.blueprint.objective.weights
        guardrails = self.blueprint.objective.guardrails
        self._guardrail = guardrails[0] if guardrails else None
        self._oracle_multiplier: float | None = None

    # -- blueprint -------------------------------------------------------------------------
    def _check_blueprint(self) -> None:
        bp = self.blueprint
        if bp.name != self.use_case:
            raise ValueError(f"{type(self).__name__} simulates {self.use_case!r}, not {bp.name!r}")
        expected = self.expected_features()
        got = {f.name: f.type for f in bp.features}
        if got != expected:
            raise ValueError(
                f"blueprint {bp.name!r} has features {got}; the simulator produces {expected}"
            )

    @classmethod
    @abstractmethod
    def expected_features(cls) -> dict[str, str]:
        """Feature name → type that this simulator produces."""

    @property
    def guardrail_label(self) -> str | None:
        return self._guardrail.label if self._guardrail else None

    @property
    def guardrail_bound(self) -> float | None:
        return self._guardrail.max_increase if self._guardrail else None

    @property
    def guardrail_baseline_action(self) -> str | None:
        g = self._guardrail
        if g is None:
            return None
        if g.baseline_action is not None:
            return g.baseline_action
        return (
            self.blueprint.decision.control
            if self.blueprint.decision.kind == "binary"
            else self.actions[0]
        )

    # -- population (subclasses) -----------------------------------------------------------
    @abstractmethod
    def _new_subjects(self, n: int, rng: np.random.Generator, day: int) -> Columns:
        """Latent attributes of ``n`` new subjects joining on ``day`` (0 = initial
        population); must include ``visit_prob``."""

    @abstractmethod
    def _drift(self, pop: Population, day: int, rng: np.random.Generator) -> None:
        """Update latent attributes in place at the start of ``day`` (>= 1)."""

    @abstractmethod
    def _visits(
        self, pop: Population, idx: np.ndarray, day: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, Columns, dict[str, np.ndarray]]:
        """For the visiting subjects ``idx`` on ``day``: (offset in the day in
        microseconds, full feature columns, presence masks)."""

    @abstractmethod
    def _truth(self, columns: Columns) -> dict[str, np.ndarray]:
        """Expected value of each label under each action, (n, K), from model-view
        columns (defaults filled, NaN for missing)."""

    # -- population (shared) -----------------------------------------------------------------
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _make_population(
        self, n: int, day: int, rng: np.random.Generator, prefix: str
    ) -> Population:
        attrs = self._new_subjects(n, rng, day)
        ids = np.array([f"{prefix}{i:07d}" for i in range(n)], dtype=object)
        return Population(ids, attrs)

    def initial_population(self, n: int, stream: int = 0) -> Population:
        return self._make_population(n, 0, self._rng(stream, 0), prefix="u")

    def _advance(self, pop: Population, day: int, base_n: int, stream: int) -> None:
        """Start of ``day``: drift the existing subjects and let new ones join."""
        rng = self._rng(stream, 1, day)
        self._drift(pop, day, rng)
        joiners = int(rng.poisson(self.new_subjects_per_day * base_n))
        if joiners > 0:
            new = self._make_population(joiners, day, rng, prefix=f"d{day:03d}u")
            pop.append(new)

    def day_visits(self, pop: Population, day: int, stream: int = 0) -> Visits:
        """Who visits on ``day`` and with which features, sorted by time of day."""
        rng = self._rng(stream, 2, day)
        visiting = np.flatnonzero(rng.random(pop.n) < pop.attrs["visit_prob"])
        offsets, cols, present = self._visits(pop, visiting, day, rng)
        order = np.argsort(offsets, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        present = {k: v[order] for k, v in present.items()}
        return Visits(pop.ids[visiting][order], offsets[order], cols, present)

    def sample_visits(self, n: int = 20_000, day: int = 0, seed: int | None = None) -> Visits:
        """``n`` decisions of a fresh population on ``day`` (drift applied), seeded by
        ``seed`` (default: derived from the simulator's seed)."""
        stream = 1_000 + (0 if seed is None else int(seed) + 1)
        base = max(math.ceil(n / max(self._mean_visit_prob(), 0.05) * 1.2), 16)
        parts: list[Visits] = []
        total = 0
        batch = 0
        while total < n:
            pop = self._make_population(base, 0, self._rng(stream, 0, batch), prefix=f"e{batch}u")
            for d in range(1, day + 1):
                self._advance(pop, d, base, stream + 100_000 * (batch + 1))
            v = self.day_visits(pop, day, stream + 200_000 * (batch + 1))
            parts.append(v)
            total += v.n
            batch += 1
        return _concat_visits(parts, n, self._rng(stream, 3))

    def sample_rows(
        self, n: int = 20_000, day: int = 0, seed: int | None = None
    ) -> list[dict[str, Any]]:
        """Feature dicts of ``n`` fresh decisions on ``day`` (some optional keys omitted)."""
        return self.sample_visits(n, day, seed).rows()

    def _mean_visit_prob(self) -> float:
        attrs = self._new_subjects(2_000, self._rng(999, 0), 0)
        return float(np.mean(attrs["visit_prob"]))

    # -- truth ---------------------------------------------------------------------------------
    def _as_columns(self, rows: Rows | Visits | Columns) -> Columns:
        if isinstance(rows, Visits):
            return self.codec.fill_missing(rows.columns, rows.present)
        if (
            isinstance(rows, dict)
            and rows
            and all(isinstance(v, np.ndarray) for v in rows.values())
        ):
            return rows
        return self.codec.to_columns(rows)  # type: ignore[arg-type]

    def expected_outcomes(self, rows: Rows | Visits | Columns) -> dict[str, np.ndarray]:
        """True expected value of each label for each action: label → (n, K)."""
        return self._truth(self._as_columns(rows))

    def objective_values(self, rows: Rows | Visits | Columns) -> np.ndarray:
        """Expected objective (the blueprint's linear expression) per action, (n, K)."""
        return self._objective(self.expected_outcomes(rows))

    def _objective(self, outcomes: Mapping[str, np.ndarray]) -> np.ndarray:
        total = np.zeros_like(next(iter(outcomes.values())))
        for label, w in self.weights.items():
            total = total + w * outcomes[label]
        return total

    # -- policies ------------------------------------------------------------------------------
    def constant_policy(self, action: str) -> Callable[[list[dict[str, Any]]], np.ndarray]:
        k = self.actions.index(action)

        def policy(rows: list[dict[str, Any]]) -> np.ndarray:
            p = np.zeros((len(rows), len(self.actions)))
            p[:, k] = 1.0
            return p

        return policy

    def oracle_policy(self, rows: Rows | Visits | Columns) -> np.ndarray:
        """One-hot (n, K): the best action per row by the true expected objective, with the
        guardrail label penalised just enough that the guardrail holds on a reference
        sample (no penalty when it already holds)."""
        outcomes = self.expected_outcomes(rows)
        return self._oracle_from_outcomes(outcomes, self.oracle_multiplier())

    def _oracle_from_outcomes(
        self, outcomes: Mapping[str, np.ndarray], multiplier: float
    ) -> np.ndarray:
        value = self._objective(outcomes)
        if multiplier > 0 and self.guardrail_label is not None:
            value = value - multiplier * outcomes[self.guardrail_label]
        best = np.argmax(value, axis=1)
        out = np.zeros_like(value)
        out[np.arange(value.shape[0]), best] = 1.0
        return out

    def oracle_multiplier(self) -> float:
        """Lagrange multiplier on the guardrail label used by the oracle (0 when the
        unconstrained oracle satisfies the guardrail on a reference sample of day 0)."""
        if self._oracle_multiplier is not None:
            return self._oracle_multiplier
        lam = 0.0
        label, bound = self.guardrail_label, self.guardrail_bound
        if label is not None and bound is not None:
            outcomes = self.expected_outcomes(self.sample_visits(20_000, 0))
            base = outcomes[label][
                :, self.actions.index(self.guardrail_baseline_action or self.actions[0])
            ]

            def excess(m: float) -> float:
                p = self._oracle_from_outcomes(outcomes, m)
                return float(np.mean((p * outcomes[label]).sum(axis=1) - base)) - bound

            if excess(0.0) > 0:
                lo, hi = 0.0, 1.0
                while excess(hi) > 0 and hi < 1e6:
                    hi *= 2
                for _ in range(50):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
                lam = hi
        self._oracle_multiplier = lam
        return lam

    def policy_value(
        self,
        policy: PolicyLike | str,
        n: int = 20_000,
        day: int = 0,
        rows: Rows | Visits | None = None,
        seed: int | None = None,
    ) -> PolicyEvaluation:
        """Exact expected value of ``policy`` over a sample of decisions.

        ``policy`` is an (n, K) probability matrix for ``rows``, a callable ``rows -> (n, K)``
        (e.g. ``lambda rows: client.action_probabilities(use_case, rows)``) or an action name
        (the constant policy). Without ``rows`` the sample is :meth:`sample_visits` of
        ``n`` decisions on ``day``: Monte-Carlo over subjects, exact over outcomes. With
        ``rows`` (feature dicts or :class:`Visits`), ``day`` is only recorded.
        """
        sample: Visits | list[dict[str, Any]]
        if rows is None:
            sample = self.sample_visits(n, day, seed)
        elif isinstance(rows, Visits):
            sample = rows
        else:
            sample = [dict(r) for r in rows]
        outcomes = self._truth(self._as_columns(sample))
        m = next(iter(outcomes.values())).shape[0]
        if isinstance(policy, str):
            probs = self.constant_policy(policy)([{}] * m)
        elif callable(policy):
            if getattr(policy, "__self__", None) is self:
                probs = np.asarray(policy(sample), dtype=np.float64)  # accepts visits as well
            else:
                row_dicts = sample.rows() if isinstance(sample, Visits) else sample
                probs = np.asarray(policy(row_dicts), dtype=np.float64)
        else:
            probs = np.asarray(policy, dtype=np.float64)
        if probs.shape != (m, len(self.actions)):
            raise ValueError(
                f"policy probabilities have shape {probs.shape}, expected {(m, len(self.actions))}"
            )
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6) or (probs < -1e-12).any():
            raise ValueError("policy probabilities must be non-negative and sum to 1 per row")
        label_means = {lb: float(np.mean((probs * o).sum(axis=1))) for lb, o in outcomes.items()}
        value = float(np.mean((probs * self._objective(outcomes)).sum(axis=1)))
        guard: float | None = None
        if self.guardrail_label is not None:
            base_k = self.actions.index(self.guardrail_baseline_action or self.actions[0])
            guard = label_means[self.guardrail_label] - float(
                np.mean(outcomes[self.guardrail_label][:, base_k])
            )
        shares = {a: float(s) for a, s in zip(self.actions, probs.mean(axis=0), strict=True)}
        return PolicyEvaluation(value, guard, self.guardrail_bound, label_means, shares, m, day)

    def oracle_value(self, n: int = 20_000, day: int = 0, seed: int | None = None) -> float:
        return self.policy_value(self.oracle_policy, n=n, day=day, seed=seed).value

    def constant_values(
        self, n: int = 20_000, day: int = 0, seed: int | None = None
    ) -> dict[str, float]:
        """Expected value of always taking each action."""
        visits = self.sample_visits(n, day, seed)
        v = self.objective_values(visits).mean(axis=0)
        return {a: float(x) for a, x in zip(self.actions, v, strict=True)}

    def best_constant(
        self, n: int = 20_000, day: int = 0, seed: int | None = None
    ) -> tuple[str, float]:
        values = self.constant_values(n, day, seed)
        action = max(values, key=lambda a: values[a])
        return action, values[action]

    def best_constant_value(self, n: int = 20_000, day: int = 0, seed: int | None = None) -> float:
        """Value of the best single action for everyone (guardrail not applied)."""
        return self.best_constant(n, day, seed)[1]

    # -- traffic -------------------------------------------------------------------------------
    def run(
        self,
        client: DecisionClient,
        clock: SimClock,
        subjects: int,
        days: int,
        start: datetime | date | str | int | None = None,
        use_case: str | None = None,
    ) -> SimulationReport:
        """Drive ``days`` days of traffic from ``subjects`` subjects through ``client``.

        ``clock`` must be the clock the client timestamps with; it is set to each event's
        simulated time before the call. Before each decision every observation due by then
        is logged; after the last day the rest is flushed up to ``flush_days`` later.
        """
        if subjects < 1 or days < 1:
            raise ValueError("subjects and days must be at least 1")
        t0 = time.perf_counter()
        uc = use_case or self.use_case
        start_us = resolve_start(start)
        cfg = self.delivery
        windows_us = {lb.name: int(lb.window_hours * HOUR_US) for lb in self.blueprint.labels}
        action_index = {a: i for i, a in enumerate(self.actions)}
        pop = self.initial_population(subjects)
        queue = EventQueue()
        report = SimulationReport(
            use_case=uc,
            seed=self.seed,
            subjects=subjects,
            subjects_total=subjects,
            days=days,
            start=to_datetime(start_us).isoformat(),
            end="",
            start_us=start_us,
            end_us=start_us,
            positives=dict.fromkeys(self.labels, 0),
            observations_by_label=dict.fromkeys(self.labels, 0),
            actions=dict.fromkeys(self.actions, 0),
        )
        objective_sum = 0.0
        guard_sum = 0.0
        guard_label = self.guardrail_label
        guard_base = (
            action_index[self.guardrail_baseline_action] if self.guardrail_baseline_action else 0
        )

        def deliver(until_us: int) -> None:
            for ob in queue.pop_until(until_us):
                clock.set(ob.time_us)
                client.log_observation(
                    ob.decision_id, ob.name, ob.value, observation_id=ob.observation_id
                )
                if ob.duplicate:
                    report.duplicates += 1
                else:
                    report.observations += 1
                    report.observations_by_label[ob.name] += 1
                    if ob.late:
                        report.late += 1

        for day in range(days):
            if day > 0:
                self._advance(pop, day, subjects, stream=0)
            visits = self.day_visits(pop, day)
            n = visits.n
            rows = visits.rows()
            outcomes = self.expected_outcomes(visits)
            objective = self._objective(outcomes)
            rng = self._rng(0, 3, day)
            draws = {lb: rng.random(n) for lb in self.labels}
            delays = {
                lb: cfg.sample_delays_us(self.blueprint.label(lb).window_hours, rng, n)
                for lb in self.labels
            }
            dropped = {lb: rng.random(n) < cfg.drop_rate for lb in self.labels}
            duplicated = {lb: rng.random(n) < cfg.duplicate_rate for lb in self.labels}
            dup_delay = {
                lb: (rng.exponential(cfg.duplicate_delay_s, n) * SECOND_US).astype(np.int64) + 1
                for lb in self.labels
            }
            day_us = start_us + day * DAY_US
            times = (day_us + visits.offsets_us).tolist()
            sids = visits.subject_ids.tolist()
            probs = {lb: outcomes[lb].tolist() for lb in self.labels}
            label_data = [
                (
                    lb,
                    probs[lb],
                    draws[lb].tolist(),
                    delays[lb].tolist(),
                    dropped[lb].tolist(),
                    duplicated[lb].tolist(),
                    dup_delay[lb].tolist(),
                    windows_us[lb],
                )
                for lb in self.labels
            ]
            actions_taken = np.empty(n, dtype=np.int64)
            for i in range(n):
                t = times[i]
                deliver(t)
                clock.set(t)
                d = client.get_decision(uc, sids[i], rows[i])
                a = action_index[d.action]
                actions_taken[i] = a
                for lb, p, u, delay, drop, dup, extra, window in label_data:
                    if u[i] >= p[i][a]:
                        continue  # no outcome: no observation, the label fills with 0
                    report.positives[lb] += 1
                    if drop[i]:
                        report.dropped += 1
                        continue
                    oid = f"{d.decision_id}:{lb}"
                    at = t + delay[i]
                    late = delay[i] > window
                    queue.push(at, d.decision_id, lb, 1.0, oid, late=late)
                    if dup[i]:
                        queue.push(
                            at + extra[i], d.decision_id, lb, 1.0, oid, duplicate=True, late=late
                        )
            report.decisions += n
            report.decisions_by_day.append(n)
            for a, c in zip(*np.unique(actions_taken, return_counts=True), strict=True):
                report.actions[self.actions[int(a)]] += int(c)
            objective_sum += float(objective[np.arange(n), actions_taken].sum())
            if guard_label is not None:
                g = outcomes[guard_label]
                guard_sum += float((g[np.arange(n), actions_taken] - g[:, guard_base]).sum())
        end_days_us = start_us + days * DAY_US
        horizon = end_days_us + int(cfg.flush_days * DAY_US)
        deliver(horizon)
        report.beyond_horizon = sum(1 for ob in queue.clear() if not ob.duplicate)
        clock.set(max(clock(), end_days_us))
        report.subjects_total = pop.n
        report.end_us = end_days_us
        report.end = to_datetime(end_days_us).isoformat()
        if report.decisions:
            report.expected_objective = objective_sum / report.decisions
            if guard_label is not None:
                report.expected_guardrail = guard_sum / report.decisions
        report.elapsed_seconds = round(time.perf_counter() - t0, 3)
        return report


def _concat_visits(parts: list[Visits], n: int, rng: np.random.Generator) -> Visits:
    """``n`` visits drawn at random from ``parts`` (all of them when there are ``n``), in
    time-of-day order."""
    offsets = np.concatenate([p.offsets_us for p in parts])
    keep = np.sort(rng.choice(offsets.shape[0], size=n, replace=False))
    keep = keep[np.argsort(offsets[keep], kind="stable")]
    ids = np.concatenate([p.subject_ids for p in parts])[keep]
    cols = {k: np.concatenate([p.columns[k] for p in parts])[keep] for k in parts[0].columns}
    present = {k: np.concatenate([p.present[k] for p in parts])[keep] for k in parts[0].present}
    return Visits(ids, offsets[keep], cols, present)
