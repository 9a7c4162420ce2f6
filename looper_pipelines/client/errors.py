"""Errors the SDK raises (defined in ``looper_pipelines.errors``)."""

from looper_pipelines.errors import LooperInputError, UnknownUseCaseError

__all__ = ["LooperInputError", "UnknownUseCaseError"]
