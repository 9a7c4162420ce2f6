"""Heterogeneous treatment effects from experiment data.

``fit_cate`` estimates per-row effects of a binary treatment with EconML meta-learners
or a causal forest on LightGBM models, choosing among them on held-out data by a doubly
robust score; ``qini_curve``, ``qini_area`` and ``uplift_by_segment`` judge how well
the estimated effects rank and describe the rows.
"""

from looper_pipelines.causal.cate import CateEstimator, fit_cate
from looper_pipelines.causal.learners import LEARNERS, make_learner
from looper_pipelines.causal.uplift import qini_area, qini_curve, uplift_by_segment

__all__ = [
    "LEARNERS",
    "CateEstimator",
    "fit_cate",
    "make_learner",
    "qini_area",
    "qini_curve",
    "uplift_by_segment",
]
