"""The decision SDK: ``LooperClient.get_decision`` and ``LooperClient.log_observation``."""

from looper_pipelines.client.client import LooperClient
from looper_pipelines.client.decision import Decision
from looper_pipelines.client.errors import LooperInputError, UnknownUseCaseError

__all__ = ["Decision", "LooperClient", "LooperInputError", "UnknownUseCaseError"]
