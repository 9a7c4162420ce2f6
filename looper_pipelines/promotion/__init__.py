"""Promotion gates and the promotion history."""

from looper_pipelines.promotion.gates import GateResult, PromotionDecision, decide_promotion
from looper_pipelines.promotion.history import PromotionHistory

__all__ = ["GateResult", "PromotionDecision", "PromotionHistory", "decide_promotion"]
