"""How a feature value becomes a model input, and what the inputs of a model are: one rule
for the SDK, training, evaluation and serving."""

from looper_pipelines.features.encoding import (
    category_codes,
    encode_logged,
    encode_value,
    missing_encoding,
)
from looper_pipelines.features.inputs import (
    ACTION_INPUT,
    action_grid,
    categorical_inputs,
    input_names,
    with_action,
)

__all__ = [
    "ACTION_INPUT",
    "action_grid",
    "categorical_inputs",
    "category_codes",
    "encode_logged",
    "encode_value",
    "input_names",
    "missing_encoding",
    "with_action",
]
