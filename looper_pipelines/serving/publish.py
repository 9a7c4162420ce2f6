"""Build and publish serving artifacts (only the export step writes these).

``build_artifact`` compiles one model per label into ``versions/<id>/`` with a
``deployment.json``; ``activate`` points ``current.json`` at a built version (atomic
rename), which every decision process picks up on its next check, and appends it to
``published.jsonl``: the versions a fresh process may fall back to when the current one
does not verify (a built version that was never activated, e.g. after a failed parity
check, is never served)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from looper_pipelines.home import HomeLayout
from looper_pipelines.serving.runtime import CURRENT, DEPLOYMENT, PUBLISHED_LOG

PARITY_TOLERANCE = 1e-6  # compiled vs LightGBM predictions: max abs difference to publish


def version_dir(layout: HomeLayout, use_case: str, version_id: str) -> Path:
    return layout.serving / use_case / "versions" / version_id


def build_artifact(
    layout: HomeLayout,
    use_case: str,
    version_id: str,
    boosters: Mapping[str, Any],
    feature_names: list[str],
    meta: dict[str, Any],
) -> Path:
    """Compile every label's booster; returns the version folder (not yet active)."""
    from looper_pipelines.serving.compiled import compile_lightgbm

    final = version_dir(layout, use_case, version_id)
    if final.exists():
        shutil.rmtree(final)
    tmp = final.with_name(f".tmp-{version_id}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "models").mkdir(parents=True)
    models: dict[str, str] = {}
    for label, booster in boosters.items():
        out = compile_lightgbm(booster, tmp / "models" / label, feature_names=feature_names, metadata={**meta, "label": label})
        models[label] = str(Path(out).relative_to(tmp))
    doc = {**meta, "use_case": use_case, "version": version_id, "models": models, "feature_names": feature_names,
           "built_at": time.time()}
    (tmp / DEPLOYMENT).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    os.replace(tmp, final)
    return final


def parity(layout: HomeLayout, use_case: str, version_id: str, boosters: Mapping[str, Any], x: np.ndarray) -> dict[str, float]:
    """Max absolute difference between compiled and LightGBM predictions per label."""
    from looper_pipelines.serving.compiled import CompiledModel

    folder = version_dir(layout, use_case, version_id)
    meta = json.loads((folder / DEPLOYMENT).read_text())
    out = {}
    for label, rel in meta["models"].items():
        compiled = CompiledModel.load(folder / rel)
        out[label] = float(np.max(np.abs(compiled.predict(x) - boosters[label].predict(x)))) if len(x) else 0.0
    return out


def activate(layout: HomeLayout, use_case: str, version_id: str) -> None:
    folder = version_dir(layout, use_case, version_id)
    if not (folder / DEPLOYMENT).exists():
        raise FileNotFoundError(f"no built serving artifact {folder}")
    cur = layout.serving / use_case / CURRENT
    record = json.dumps({"version": version_id, "activated_at": time.time()})
    with open(layout.serving / use_case / PUBLISHED_LOG, "a", encoding="utf-8") as f:
        f.write(record + "\n")  # first: a version is in the log before any process can meet it
    tmp = cur.with_name(f".{CURRENT}.{os.getpid()}")
    tmp.write_text(record)
    os.replace(tmp, cur)
