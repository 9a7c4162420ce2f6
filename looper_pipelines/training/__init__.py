"""Training: examples from the warehouse mart, one LightGBM model per label."""

from looper_pipelines.training.dataset import TrainingSet, encode_examples, load_training_examples
from looper_pipelines.training.trainer import LabelModel, TrainedModels, train_models

__all__ = [
    "LabelModel",
    "TrainedModels",
    "TrainingSet",
    "encode_examples",
    "load_training_examples",
    "train_models",
]
