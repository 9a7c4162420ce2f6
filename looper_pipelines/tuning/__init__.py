"""Bayesian tuning of decision-policy parameters for the product objective."""

from looper_pipelines.tuning.optuna_tuner import TuningResult, tune_policy

__all__ = ["TuningResult", "tune_policy"]
