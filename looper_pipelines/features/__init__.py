"""How a feature value becomes a model input: one rule for the SDK, training and serving."""

from looper_pipelines.features.encoding import (
    category_codes,
    encode_logged,
    encode_value,
    missing_encoding,
)

__all__ = ["category_codes", "encode_logged", "encode_value", "missing_encoding"]
