"""A published, compiled champion for ``notification_send`` on synthetic data, as the
serving assets would publish one: per label (click, unsubscribe), a LightGBM booster of 50
trees with 15 leaves over the blueprint's features and the action. Shared by the
benchmarks that measure decisions with a model; they drop this folder from sys.path, so
they load it with ``runpy.run_path``."""

from __future__ import annotations

from pathlib import Path

UC = "notification_send"


def publish_champion(home: Path, model_version: str = "bench") -> None:
    """Compile and activate a champion for ``UC`` under ``home``."""
    import lightgbm as lgb
    import numpy as np

    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.home import HomeLayout
    from looper_pipelines.serving.publish import activate, build_artifact

    bp = load_catalog()[UC]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, len(bp.features) + 1))
    x[:, -1] = rng.integers(0, 2, len(x))
    # as the trainer does: category features and the action are LightGBM categoricals
    categorical = [i for i, f in enumerate(bp.features) if f.type == "category"] + [x.shape[1] - 1]
    for i in categorical[:-1]:
        x[:, i] = rng.integers(0, len(bp.features[i].categories or []), len(x))
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1}
    boosters = {
        label: lgb.train(params, lgb.Dataset(x, (x[:, 0] * (1 + x[:, -1]) + rng.normal(size=len(x)) > 0).astype(float),
                                         categorical_feature=categorical),
                         num_boost_round=50)
        for label in bp.label_names
    }  # fmt: skip
    layout = HomeLayout.of(home)
    meta = {"model_version": model_version, "policy_version": "bench", "policy_params": {},
            "blueprint_version": bp.version, "lineage_version": bp.lineage_version}  # fmt: skip
    build_artifact(layout, UC, model_version, boosters, [*bp.feature_names, "action"], meta)
    activate(layout, UC, model_version)
