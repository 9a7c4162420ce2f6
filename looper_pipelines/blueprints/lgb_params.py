"""LightGBM parameters of a blueprint (``model.params``), checked when the blueprint loads.

The common parameters (and their LightGBM aliases) are checked by type and range, so that
``num_leaves: banana`` fails at ``looper blueprint validate`` rather than in training.
Other names are passed through to LightGBM as it would take them (it warns about names it
does not know), provided they are names and their values are plain: a finite number, a
boolean, a short text, or a short list of numbers (e.g. ``monotone_constraints``).
Parameters Looper sets itself -- the objective, the number of rounds, early stopping --
are refused: they belong to the blueprint's labels and ``model`` fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_PARAMS = 64
MAX_TEXT_CHARS = 200
MAX_LIST_ITEMS = 1000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class _Spec:
    kind: type  # int, float or bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    aliases: tuple[str, ...] = ()

    def describe(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false"}[self.kind]
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        return what


SPECS: dict[str, _Spec] = {
    "num_leaves": _Spec(int, 2, 131072, aliases=("num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes")),
    "learning_rate": _Spec(float, 0, None, low_open=True, aliases=("shrinkage_rate", "eta")),
    "min_data_in_leaf": _Spec(int, 0, aliases=("min_data_per_leaf", "min_data", "min_child_samples",
                                               "min_samples_leaf")),
    "min_sum_hessian_in_leaf": _Spec(float, 0, aliases=("min_sum_hessian_per_leaf", "min_sum_hessian",
                                                        "min_hessian", "min_child_weight")),
    "max_depth": _Spec(int),
    "feature_fraction": _Spec(float, 0, 1, low_open=True, aliases=("sub_feature", "colsample_bytree")),
    "feature_fraction_bynode": _Spec(float, 0, 1, low_open=True, aliases=("sub_feature_bynode",
                                                                          "colsample_bynode")),
    "bagging_fraction": _Spec(float, 0, 1, low_open=True, aliases=("sub_row", "subsample", "bagging")),
    "bagging_freq": _Spec(int, 0, aliases=("subsample_freq",)),
    "lambda_l1": _Spec(float, 0, aliases=("reg_alpha", "l1_regularization")),
    "lambda_l2": _Spec(float, 0, aliases=("reg_lambda", "lambda", "l2_regularization")),
    "min_gain_to_split": _Spec(float, 0, aliases=("min_split_gain",)),
    "max_bin": _Spec(int, 2, aliases=("max_bins",)),
    "min_data_per_group": _Spec(int, 1),
    "max_cat_threshold": _Spec(int, 1),
    "cat_smooth": _Spec(float, 0),
    "cat_l2": _Spec(float, 0),
    "path_smooth": _Spec(float, 0),
    "extra_trees": _Spec(bool, aliases=("extra_tree",)),
    "num_threads": _Spec(int, 0, aliases=("num_thread", "nthread", "nthreads", "n_jobs")),
    "seed": _Spec(int, aliases=("random_seed", "random_state")),
    "verbosity": _Spec(int, aliases=("verbose",)),
}
RESERVED = {
    "objective", "objective_type", "app", "application", "loss", "num_iterations", "num_iteration",
    "n_iter", "num_tree", "num_trees", "num_round", "num_rounds", "nrounds", "num_boost_round",
    "n_estimators", "max_iter", "early_stopping_round", "early_stopping_rounds", "early_stopping",
    "n_iter_no_change", "metric", "metrics", "metric_types", "task", "task_type",
}
_CANONICAL = {alias: name for name, spec in SPECS.items() for alias in (name, *spec.aliases)}


def _check_value(key: str, spec: _Spec, v: Any) -> None:
    if spec.kind is bool:
        if not isinstance(v, bool):
            raise ValueError(f"params.{key} must be true or false, got {_short(v)}")
        return
    ok_type = isinstance(v, int) if spec.kind is int else isinstance(v, int | float)
    if isinstance(v, bool) or not ok_type:
        raise ValueError(f"params.{key} must be {spec.describe()}, got {_short(v)}")
    x = float(v)
    in_range = (
        math.isfinite(x)
        and (spec.low is None or (x > spec.low if spec.low_open else x >= spec.low))
        and (spec.high is None or x <= spec.high)
    )
    if not in_range:
        raise ValueError(f"params.{key} must be {spec.describe()}, got {_short(v)}")


def _check_plain(key: str, v: Any) -> None:
    if isinstance(v, bool):
        return
    if isinstance(v, int | float):
        if not math.isfinite(float(v)):
            raise ValueError(f"params.{key} must be a finite number, got {_short(v)}")
        return
    if isinstance(v, str):
        if len(v) > MAX_TEXT_CHARS:
            raise ValueError(f"params.{key} is a text of {len(v)} characters; at most {MAX_TEXT_CHARS}")
        return
    if isinstance(v, list):
        if len(v) > MAX_LIST_ITEMS:
            raise ValueError(f"params.{key} has {len(v)} items; at most {MAX_LIST_ITEMS}")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(float(x)):
                raise ValueError(f"params.{key} must list finite numbers, got {_short(x)}")
        return
    raise ValueError(f"params.{key} must be a number, a boolean, a text or a list of numbers, "
                     f"got {type(v).__name__}")


def check_lgb_params(params: dict[str, Any]) -> None:
    """Raise ValueError naming the first bad parameter of ``params`` (see the module)."""
    if len(params) > MAX_PARAMS:
        raise ValueError(f"model.params has {len(params)} entries; at most {MAX_PARAMS}")
    given: dict[str, str] = {}
    for key, v in params.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ValueError(f"parameter name {_short(key)} is not a LightGBM parameter name (a-z, 0-9, _)")
        if key in RESERVED:
            raise ValueError(f"params.{key} is set by Looper (objective from the label kind, rounds and "
                             "early stopping from model.num_boost_round and model.early_stopping_rounds)")
        name = _CANONICAL.get(key)
        if name is None:
            _check_plain(key, v)
            continue
        if name in given:
            raise ValueError(f"params.{key} and params.{given[name]} are the same LightGBM parameter ({name})")
        given[name] = key
        _check_value(key, SPECS[name], v)


def _short(v: Any, limit: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit]}... ({len(r)} characters)"
