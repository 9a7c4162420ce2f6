"""Off-policy evaluation: the value of a decision policy from logged decisions.

``estimate_policy_value`` estimates a target policy's expected reward with IPS, SNIPS,
DR or switch-DR and a confidence interval; ``estimate_policy_lift`` estimates the
difference between two policies on the same logged rows with a paired interval.
"""

from looper_pipelines.ope.estimators import (
    CI_METHODS,
    ESTIMATORS,
    PolicyValue,
    default_tau,
    estimate_policy_lift,
    estimate_policy_value,
    select_tau,
)

__all__ = [
    "CI_METHODS",
    "ESTIMATORS",
    "PolicyValue",
    "default_tau",
    "estimate_policy_lift",
    "estimate_policy_value",
    "select_tau",
]
