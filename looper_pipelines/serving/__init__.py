"""Serving: compiled models and their manifests, on the request path.

Nothing here imports Dagster, dbt, MLflow, EconML, Optuna or Great Expectations; the
compiled-model loader needs only ctypes and numpy. Import the submodules directly, e.g.
``from looper_pipelines.serving.compiled import CompiledModel``.
"""
