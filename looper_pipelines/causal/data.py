"""The randomised data causal evaluation runs on: the experiment arm when the blueprint has
one with enough rows, else every logged decision with its logged propensity (randomised
logs, such as imported ones, need no experiment arm)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.training.dataset import TrainingSet, encode_examples, load_training_examples

MIN_ROWS = 200
MIN_ROWS_PER_ARM = 50


@dataclass(frozen=True)
class RandomisedData:
    data: TrainingSet
    treated: np.ndarray  # (n,) 0/1
    propensity: np.ndarray  # (n,) probability of treatment the row was assigned with
    source: str


def randomised_data(bp: Blueprint, warehouse: str | Path) -> RandomisedData | str:
    """The binary decision's randomised rows with their treatment propensities, or why
    there are none (a message)."""
    if bp.decision.kind != "binary":
        return "not applicable: needs a binary decision"
    treat = bp.decision.actions.index(bp.decision.treatment)
    if bp.experiment is not None:
        frame = load_training_examples(warehouse, bp.name, table="fct_experiment_outcomes")
        if frame.height >= MIN_ROWS:
            data = encode_examples(bp, frame.with_columns(propensity=frame["assignment_probability"]))
            arm_treat = sum(a.probability for a in bp.experiment.arms if a.action == bp.decision.treatment)
            t = (data.action == treat).astype(int)
            return _checked(RandomisedData(data, t, np.full(len(t), arm_treat),
                                           f"experiment arm ({len(t)} rows)"))
    data = encode_examples(bp, load_training_examples(warehouse, bp.name))
    t = (data.action == treat).astype(int)
    # P(treatment) of each row from the probability its logged action had
    p_treat = np.where(t == 1, data.propensity, 1.0 - data.propensity)
    keep = (p_treat > 0) & (p_treat < 1)
    if keep.sum() < MIN_ROWS:
        return f"too few randomised rows ({int(keep.sum())}; need {MIN_ROWS})"
    sub = data.subset(keep)
    return _checked(RandomisedData(sub, t[keep], p_treat[keep],
                                   f"logged decisions with their logged propensities ({int(keep.sum())} rows)"))


def _checked(r: RandomisedData) -> RandomisedData | str:
    n_treated = int(r.treated.sum())
    n_control = len(r.treated) - n_treated
    if len(r.treated) < MIN_ROWS or min(n_treated, n_control) < MIN_ROWS_PER_ARM:
        return f"too few rows in {r.source}: {n_treated} treated, {n_control} control"
    return r
