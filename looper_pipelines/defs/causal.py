"""hte_evaluation: heterogeneous treatment effects on randomised data (experiment arm or logs)."""


from typing import Any

import numpy as np
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from looper_pipelines.defs.partitions import MODEL_STAGE
from looper_pipelines.defs.resources import LooperHome, MlflowTracking


def build_causal_assets(use_case: str) -> list[Any]:
    @asset(
        key=AssetKey([use_case, "hte_evaluation"]),
        deps=[AssetKey([use_case, "trained_model"]), AssetKey([use_case, "fct_experiment_outcomes"])],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"econml", "mlflow"},
        description="CATE model, ATE with interval, Qini curve and effects by segment on randomised data "
                    "(the experiment arm, else logged decisions with their logged propensities).",
    )
    def hte_evaluation(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.causal import fit_cate
        from looper_pipelines.causal.data import randomised_data
        from looper_pipelines.causal.uplift import qini_area, qini_curve, uplift_by_segment
        from looper_pipelines.evaluation import plots
        from looper_pipelines.evaluation.policy_value import reward
        from looper_pipelines.registry import CHALLENGER

        bp = looper_home.blueprint(use_case)
        found = randomised_data(bp, looper_home.layout.warehouse)
        if isinstance(found, str):
            return MaterializeResult(metadata={"status": found})
        data, t, propensity = found.data, found.treated, found.propensity
        y = reward(bp.objective.weights, data.labels)
        x = np.nan_to_num(data.x, nan=-1.0)
        est = fit_cate(x, t, y, learner="auto", propensity=propensity, random_state=0)
        effect = est.effect(x)
        ate, lo, hi = est.ate()  # cross-fitted doubly robust ATE with its interval
        fractions, qini = qini_curve(effect, t, y, propensity=propensity)
        area = float(qini_area(effect, t, y, propensity=propensity))
        fig_q = plots.line_figure(np.asarray(fractions), {"model": np.asarray(qini), "random": np.asarray(fractions) * np.asarray(qini)[-1]},
                                  f"Qini: {use_case}", "fraction treated", "incremental objective")
        # effects by segment: quartiles of the estimated effect, and the blueprint's category features
        quartile = np.searchsorted(np.quantile(effect, [0.25, 0.5, 0.75]), effect)
        tables = {"effect_quartile": uplift_by_segment([f"q{q + 1}" for q in quartile], t, y, effect, propensity)}
        for j, f in enumerate(bp.features):
            if f.type == "category":
                names = np.array(f.categories or [], dtype=object)
                codes = np.nan_to_num(data.x[:, j], nan=-1).astype(int)
                tables[f.name] = uplift_by_segment([names[c] if c >= 0 else "missing" for c in codes], t, y, effect, propensity)
        rows = {k: v.to_dicts() for k, v in tables.items()}
        table = "\n\n".join(f"**{k}**\n\n" + _markdown(v) for k, v in tables.items())
        reg = mlflow_tracking.registry()
        version = reg.by_alias(use_case, CHALLENGER)
        summary = {"data": found.source, "learner": est.learner_name, "ate": ate, "ate_ci_low": lo, "ate_ci_high": hi, "qini_area": area,
                   "n": len(t), "selection_scores": getattr(est, "selection_scores", {}), "segments": rows}
        if version is not None:
            reg.log_to_run(version.run_id, {"hte.ate": ate, "hte.qini_area": area},
                           {"plots/qini.png": fig_q, "evaluation/hte.json": summary})
        return MaterializeResult(metadata={
            "data": found.source, "learner": est.learner_name, "ate": float(ate), "ate_ci_low": float(lo), "ate_ci_high": float(hi),
            "qini_area": area, "n": len(t), "effects_by_segment": MetadataValue.md(table),
            "qini_curve": MetadataValue.md(plots.to_markdown_image(fig_q)),
        })

    return [hte_evaluation]


def _markdown(frame: Any) -> str:
    cols = ["segment", "n", "mean_effect", "observed_effect", "observed_ci_low", "observed_ci_high"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in frame.select(cols).iter_rows():
        lines.append("| " + " | ".join(f"{v:+.4f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)
