"""The strategy blueprint: everything that defines one use case's decision strategy.

A blueprint is loaded from YAML (see ``loader.py``), validated into these typed models and
versioned by a content hash of its normalised form. Changing ``features`` or ``labels``
starts a new model lineage (``lineage_version``); changing policy parameters alone does not.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from looper_pipelines.blueprints.cron import check_cron
from looper_pipelines.blueprints.lgb_params import check_lgb_params

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    # every float field of a blueprint is finite: .inf, .nan and 1e999 are refused
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Exploration(_Strict):
    """Randomisation mixed into the greedy choice, with the propensity logged.

    Binary decisions use epsilon-greedy; multi-action decisions a uniform mixture. Both are
    ``(1 - epsilon) * greedy + epsilon * uniform`` over the actions.

    Exploration can decay as data grows: a model trained on ``n`` examples is served with
    ``max(min_epsilon, epsilon * 0.5 ** (n / decay_examples))`` (the cold start, ``n = 0``,
    with ``epsilon``). Without ``decay_examples`` the rate stays at ``epsilon``.
    """

    epsilon: float = Field(0.05, ge=0.0, le=1.0)
    min_epsilon: float | None = Field(None, ge=0.0, le=1.0)
    decay_examples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Exploration:
        _check_decay("epsilon", self.epsilon, self.min_epsilon, self.decay_examples)
        return self

    def epsilon_for(self, n_examples: int | float) -> float:
        """The exploration rate of a model trained on ``n_examples`` examples."""
        return decayed(self.epsilon, self.min_epsilon, self.decay_examples, n_examples)


def _check_decay(name: str, start: float, floor: float | None, halve_every: int | None) -> None:
    if floor is not None and floor > start:
        raise ValueError(f"min_{name} {floor:g} is above {name} {start:g}")
    if floor is not None and halve_every is None:
        raise ValueError(f"min_{name} needs decay_examples (how fast {name} decays to it)")


def decayed(start: float, floor: float | None, halve_every: int | None, n_examples: int | float) -> float:
    """``start`` halved every ``halve_every`` examples, not below ``floor`` (0 when None)."""
    if halve_every is None or n_examples <= 0:
        return start
    return max(floor or 0.0, start * 0.5 ** (float(n_examples) / halve_every))


class Decision(_Strict):
    kind: Literal["binary", "multi_action"]
    actions: list[Name] = Field(min_length=2)
    default_action: Name
    treatment_action: Name | None = None
    exploration: Exploration = Exploration()

    @model_validator(mode="after")
    def _check(self) -> Decision:
        if len(set(self.actions)) != len(self.actions):
            raise ValueError("actions must be unique")
        if self.kind == "binary" and len(self.actions) != 2:
            raise ValueError(f"a binary decision has exactly 2 actions, got {len(self.actions)}")
        if self.default_action not in self.actions:
            raise ValueError(f"default_action {self.default_action!r} is not one of {self.actions}")
        if self.treatment_action is not None and self.treatment_action not in self.actions:
            raise ValueError(f"treatment_action {self.treatment_action!r} is not one of {self.actions}")
        return self

    @property
    def treatment(self) -> str:
        """The 'treat' action of a binary decision (the second action unless set)."""
        return self.treatment_action or self.actions[-1]

    @property
    def control(self) -> str:
        return next(a for a in self.actions if a != self.treatment)


class Feature(_Strict):
    """One model input. ``default`` absent means the feature is required; ``default: null``
    means a missing value reaches the model as missing (NaN)."""

    name: Name
    type: Literal["float", "int", "bool", "category"]
    categories: list[str] | None = None
    default: float | int | bool | str | None = None
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError("a category feature needs a non-empty 'categories' list")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories must be unique")
        elif self.categories is not None:
            raise ValueError(f"'categories' is only allowed for category features, not {self.type}")
        if "default" in self.model_fields_set and self.default is not None:
            _check_default(self)
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


def _check_default(f: Feature) -> None:
    d = f.default
    if f.type == "category":
        if not isinstance(d, str) or d not in (f.categories or []):
            raise ValueError(f"default {d!r} is not one of the categories {f.categories}")
    elif f.type == "bool":
        if not isinstance(d, bool):
            raise ValueError(f"default {d!r} is not a boolean")
    elif isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(float(d)):
        raise ValueError(f"default {d!r} is not a finite number")
    elif f.type == "int" and float(d) != int(d):
        raise ValueError(f"default {d!r} is not an integer")


class Label(_Strict):
    """A label: observations named ``name`` within ``window_hours`` after the decision,
    aggregated with ``aggregation``; no observation in the window gives ``fill_value``."""

    name: Name
    kind: Literal["binary", "real"]
    window_hours: float = Field(gt=0, le=24 * 90)
    aggregation: Literal["max", "sum", "count"] = "max"
    fill_value: float = 0.0


class Guardrail(_Strict):
    """A bound on a label's mean under a policy: relative, its mean may exceed its mean
    under always-``baseline_action`` by at most ``max_increase``; absolute, it may not
    exceed ``max_value`` (a rate cap). At least one of the two; both may be set."""

    label: Name
    max_increase: float | None = Field(None, ge=0)
    max_value: float | None = None
    baseline_action: Name | None = None

    @model_validator(mode="after")
    def _check(self) -> Guardrail:
        if self.max_increase is None and self.max_value is None:
            raise ValueError("a guardrail needs max_increase (over baseline_action) or max_value (a cap)")
        if self.max_value is not None and not math.isfinite(self.max_value):
            raise ValueError(f"max_value must be finite, got {self.max_value}")
        if self.baseline_action is not None and self.max_increase is None:
            raise ValueError("baseline_action only applies to max_increase")
        return self


_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.UAdd,
    ast.Name,
    ast.Load,
    ast.Constant,
)


MAX_EXPRESSION_CHARS = 1000
MAX_EXPRESSION_DEPTH = 40
MAX_CONSTANT = 1e12  # the largest number an objective may write


class Objective(_Strict):
    """The product metric: a linear expression over labels, e.g. ``click - 5 * unsubscribe``.

    At most ``MAX_EXPRESSION_CHARS`` characters, nested at most ``MAX_EXPRESSION_DEPTH``
    levels, numbers of magnitude at most ``MAX_CONSTANT``; the weights must be finite."""

    expression: str
    guardrails: list[Guardrail] = []

    @field_validator("expression")
    @classmethod
    def _parse(cls, v: str) -> str:
        linear_weights(v)
        return v

    @property
    def weights(self) -> dict[str, float]:
        return linear_weights(self.expression)


def linear_weights(expression: str) -> dict[str, float]:
    """Weights of a linear expression over label names (raises ValueError otherwise)."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression has {len(expression)} characters; at most {MAX_EXPRESSION_CHARS} are allowed")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse expression {expression!r}: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # too deep or too large for the parser
        raise ValueError(f"cannot parse expression {expression!r}: {type(e).__name__}") from None
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # iteratively: a deep tree must not exhaust the Python stack
        node, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise ValueError(f"expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep")
        if not isinstance(node, _ALLOWED_NODES):
            raise ValueError(f"expression {expression!r} may only use + - * / numbers and label names")
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, int | float) and not abs(value) <= MAX_CONSTANT:  # NaN too
            raise ValueError(f"number {_short_number(value)} in the expression is outside "
                             f"[-{MAX_CONSTANT:g}, {MAX_CONSTANT:g}]")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    def walk(node: ast.AST) -> tuple[dict[str, float], float]:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(f"constant {node.value!r} is not a number")
            return {}, float(node.value)
        if isinstance(node, ast.Name):
            return {node.id: 1.0}, 0.0
        if isinstance(node, ast.UnaryOp):
            w, c = walk(node.operand)
            s = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return {k: s * x for k, x in w.items()}, s * c
        assert isinstance(node, ast.BinOp)
        lw, lc = walk(node.left)
        rw, rc = walk(node.right)
        if isinstance(node.op, ast.Add | ast.Sub):
            s = 1.0 if isinstance(node.op, ast.Add) else -1.0
            out = dict(lw)
            for k, x in rw.items():
                out[k] = out.get(k, 0.0) + s * x
            return out, lc + s * rc
        if isinstance(node.op, ast.Mult):
            if lw and rw:
                raise ValueError(f"expression {expression!r} is not linear in the labels")
            if lw:
                return {k: x * rc for k, x in lw.items()}, lc * rc
            return {k: x * lc for k, x in rw.items()}, lc * rc
        if rw:
            raise ValueError(f"expression {expression!r} divides by a label")
        if rc == 0:
            raise ValueError(f"expression {expression!r} divides by zero")
        return {k: x / rc for k, x in lw.items()}, lc / rc

    weights, constant = walk(tree)
    if not all(math.isfinite(w) for w in [constant, *weights.values()]):
        raise ValueError(f"expression {expression!r} has a weight too large to represent")
    return weights


def _short_number(v: int | float) -> str:
    text = str(v) if isinstance(v, float) or v.bit_length() < 128 else f"of {len(str(abs(v)))} digits"
    return text if len(text) <= 40 else text[:40] + "..."


class Validation(_Strict):
    """The time-based holdout: the newest examples, which choose the number of boosting
    rounds (early stopping) and on which challenger and champion are compared. It is sized
    by examples: the newest ``fraction`` of them, at least ``min_examples``, never more
    than half of all examples, and only from the newest ``max_days`` days when set. The
    deployed model is then refitted on every example."""

    fraction: float = Field(0.2, gt=0, lt=1)
    min_examples: int = Field(1000, ge=1)
    max_days: int | None = Field(None, ge=1)


class ModelSpec(_Strict):
    """One LightGBM model per label; ``task`` follows the label kind unless set.

    ``crossfit_folds``: tuning and promotion judge policies on out-of-fold predictions
    (each example scored by models that never saw it), from this many folds of subjects.

    ``sample_weight: inverse_propensity`` weights each example by one over the probability
    its action was logged with (capped), so that actions the logging policy rarely took
    count in training -- and in early stopping -- as if every action had been logged
    equally often; useful when one action dominates the logs, as a default action does."""

    labels: list[Name] | None = None
    params: dict[str, Any] = {}

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_lgb_params(v)
        return v
    num_boost_round: int = Field(200, ge=1, le=20000)
    early_stopping_rounds: int = Field(20, ge=1)
    validation: Validation = Validation()
    crossfit_folds: int = Field(5, ge=2, le=20)
    sample_weight: Literal["none", "inverse_propensity"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _validation_days(cls, data: Any) -> Any:
        """``validation_days: N`` (older blueprints) is ``validation: {max_days: N}``."""
        if isinstance(data, dict) and "validation_days" in data:
            data = dict(data)
            days = data.pop("validation_days")
            if "validation" in data:
                raise ValueError("set validation.max_days, not both validation and validation_days")
            data["validation"] = {"max_days": days}
        return data


class Parameter(_Strict):
    name: Name
    value: float
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"need finite low <= high, got low={self.low}, high={self.high}")
        if not self.low <= self.value <= self.high:
            raise ValueError(f"value {self.value} is outside [{self.low}, {self.high}]")
        return self


class Policy(_Strict):
    """How scores become an action.

    - ``threshold``: binary: treat when the score of ``score_label`` (treatment minus
      control) exceeds ``threshold``; multi-action: the best-scoring action when it beats
      the default action's score by more than ``threshold`` (else the default action).
    - ``weighted_value``: value(a) = sum over labels of weight * predicted label; parameters
      named ``weight_<label>`` override the objective's weights; binary: treat when the
      value gained by treating exceeds ``threshold``; multi-action: the best-value action
      when it beats the default action's value by more than ``threshold``.
    - ``cate_threshold``: treat when the estimated effect on the objective exceeds ``cost``.

    Tuned parameters replace the declared ``value`` only when, on examples not used to
    choose them, their improvement has a lower ``min_improvement_confidence`` bound above
    zero (or the declared values break a guardrail that the tuned ones keep).
    """

    kind: Literal["threshold", "weighted_value", "cate_threshold"]
    score_label: Name | None = None
    parameters: list[Parameter] = []
    trials: int = Field(40, ge=1, le=5000)
    min_improvement_confidence: float = Field(0.9, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("policy parameter names must be unique")
        return self

    @property
    def values(self) -> dict[str, float]:
        return {p.name: p.value for p in self.parameters}


class Arm(_Strict):
    name: Name
    action: Name
    probability: float = Field(gt=0, le=1)


class Experiment(_Strict):
    """A randomised experiment on a share of traffic (for causal evaluation). Like
    exploration, the share can decay as data grows: a model trained on ``n`` examples is
    served with ``max(min_share, share * 0.5 ** (n / decay_examples))``."""

    share: float = Field(0.1, ge=0, le=1)
    arms: list[Arm] = Field(min_length=2)
    min_share: float | None = Field(None, ge=0, le=1)
    decay_examples: int | None = Field(None, ge=1)

    def share_for(self, n_examples: int | float) -> float:
        """The experiment's share of traffic under a model trained on ``n_examples``."""
        return decayed(self.share, self.min_share, self.decay_examples, n_examples)

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        _check_decay("share", self.share, self.min_share, self.decay_examples)
        total = sum(a.probability for a in self.arms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"arm probabilities must sum to 1, got {total:g}")
        if len({a.name for a in self.arms}) != len(self.arms):
            raise ValueError("arm names must be unique")
        return self


class Promotion(_Strict):
    """When a challenger becomes the champion.

    Always: the blocking data checks passed, ``min_examples`` examples, every guardrail
    holds, and its policy beats the default action with a lower ``min_lift_confidence``
    bound above zero (a cold start never promotes a policy that may be worse than the fixed
    rule). Against a champion of the same lineage: its holdout loss is at most
    ``max_metric_regression`` (relative) above the champion's, and its lift over the
    champion's policy has a lower bound above ``-max_lift_regression`` (objective units per
    decision) with a point estimate above zero -- 0, the default, asks for a lower bound
    above zero; a small margin lets a challenger trained on more data replace a
    champion it cannot yet be shown to beat, unless it is worse with confidence."""

    min_examples: int = Field(500, ge=0)
    max_metric_regression: float = Field(0.0, ge=0)
    min_lift_confidence: float = Field(0.9, gt=0, lt=1)
    require_positive_lift: bool = True
    max_lift_regression: float = Field(0.0, ge=0)


class DataChecks(_Strict):
    """Bounds of the blocking data-quality checks on each day of logged decisions.

    ``max_null_share``: the largest share of a day's decisions that may lack a required
    feature (one without a declared default). ``max_volume_drop``: a day with fewer than
    ``1 - max_volume_drop`` times the median of the previous ``volume_history_days`` days'
    decisions blocks training (``1.0`` turns the check off)."""

    max_null_share: float = Field(0.0, ge=0.0, le=1.0)
    max_volume_drop: float = Field(0.8, gt=0.0, le=1.0)
    volume_history_days: int = Field(7, ge=1, le=90)


class Schedule(_Strict):
    """When the data job runs: a cron expression (see ``cron.py`` for the accepted syntax)."""

    cron: str = "0 3 * * *"
    enabled: bool = False

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)


class Blueprint(_Strict):
    name: Name
    description: str = ""
    decision: Decision
    features: list[Feature] = Field(min_length=1)
    labels: list[Label] = Field(min_length=1)
    objective: Objective
    model: ModelSpec = ModelSpec()
    policy: Policy
    experiment: Experiment | None = None
    promotion: Promotion = Promotion()
    data_checks: DataChecks = DataChecks()
    schedule: Schedule = Schedule()

    @model_validator(mode="after")
    def _cross_check(self) -> Blueprint:
        feats = [f.name for f in self.features]
        if len(set(feats)) != len(feats):
            raise ValueError(f"feature names must be unique, got {feats}")
        labels = [lb.name for lb in self.labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"label names must be unique, got {labels}")
        for k in self.objective.weights:
            if k not in labels:
                raise ValueError(f"objective.expression uses {k!r}, which is not a label ({labels})")
        for g in self.objective.guardrails:
            if g.label not in labels:
                raise ValueError(f"guardrail label {g.label!r} is not a label ({labels})")
            if g.baseline_action is not None and g.baseline_action not in self.decision.actions:
                raise ValueError(f"guardrail baseline_action {g.baseline_action!r} is not an action")
        for lb in self.model.labels or []:
            if lb not in labels:
                raise ValueError(f"model.labels names {lb!r}, which is not a label ({labels})")
        if self.policy.score_label is not None and self.policy.score_label not in labels:
            raise ValueError(f"policy.score_label {self.policy.score_label!r} is not a label")
        weights = self.objective.weights
        for p in self.policy.parameters:
            if not p.name.startswith("weight_"):
                continue
            label = p.name.removeprefix("weight_")
            if label not in labels:
                raise ValueError(f"policy parameter {p.name!r} names no label ({labels})")
            w = weights.get(label, 0.0)
            if w * p.value < 0 or w * p.low < 0 or w * p.high < 0:
                raise ValueError(
                    f"policy parameter {p.name!r} overrides the objective's weight {w:g} for {label!r}; "
                    f"its value and range must have the same sign, got value {p.value:g} in [{p.low:g}, {p.high:g}]"
                )
        if self.policy.kind == "cate_threshold" and self.decision.kind != "binary":
            raise ValueError("policy kind cate_threshold needs a binary decision")
        if self.experiment is not None:
            for arm in self.experiment.arms:
                if arm.action not in self.decision.actions:
                    raise ValueError(f"experiment arm {arm.name!r} uses unknown action {arm.action!r}")
        return self

    # -- derived -----------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def label_names(self) -> list[str]:
        return [lb.name for lb in self.labels]

    @property
    def model_labels(self) -> list[str]:
        return list(self.model.labels or self.label_names)

    @property
    def score_label(self) -> str:
        return self.policy.score_label or self.model_labels[0]

    def label(self, name: str) -> Label:
        return next(lb for lb in self.labels if lb.name == name)

    def guardrail_baseline(self, g: Guardrail) -> str:
        """The action a relative guardrail compares with: its ``baseline_action``, else the
        control of a binary decision or the default action of a multi-action one."""
        if g.baseline_action is not None:
            return g.baseline_action
        return self.decision.control if self.decision.kind == "binary" else self.decision.default_action

    def normalised(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    @property
    def version(self) -> str:
        """Content hash of the normalised blueprint."""
        return _digest(self.normalised())

    @property
    def lineage_version(self) -> str:
        """Hash of what a trained model depends on: features, labels, actions, model."""
        d = self.normalised()
        return _digest({k: d[k] for k in ("name", "features", "labels", "model")}
                       | {"actions": d["decision"]["actions"]})

    @property
    def policy_version(self) -> str:
        d = self.normalised()
        return _digest({"policy": d["policy"], "objective": d["objective"]})


def _digest(obj: Any) -> str:
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:12]
