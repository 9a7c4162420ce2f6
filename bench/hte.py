"""Heterogeneous treatment effects: does ``learner="auto"`` pick as well as the best learner?

Simulated experiments with known per-row effects. For each setting and seed, fit every
fixed learner and ``auto`` on the same rows and report the root-mean-square error of the
effect estimates on fresh rows, and the ratio auto / best fixed learner (goal: <= 1.10).

    python bench/hte.py            # n = 8000, 3 seeds per setting
    python bench/hte.py --quick    # n = 3000, 1 seed
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from looper_pipelines.causal import LEARNERS, fit_cate

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    tau: Callable[[FloatArray], FloatArray]
    baseline: Callable[[FloatArray], FloatArray]
    propensity: Callable[[FloatArray], FloatArray]
    noise: float = 1.0
    d: int = 6


def _sigmoid(z: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-z))


SETTINGS = (
    Setting(
        name="linear",
        description="tau = 1 + 2 x0; randomised, p = 0.5",
        tau=lambda x: 1.0 + 2.0 * x[:, 0],
        baseline=lambda x: x[:, 1] + 0.5 * x[:, 2] ** 2 + 0.5 * np.sin(np.pi * x[:, 3]),
        propensity=lambda x: np.full(x.shape[0], 0.5),
    ),
    Setting(
        name="nonlinear",
        description="tau = 1[x0 > 0] (1 + x1) + 0.5 sin(pi x2); randomised, p = 0.3",
        tau=lambda x: (x[:, 0] > 0) * (1.0 + x[:, 1]) + 0.5 * np.sin(np.pi * x[:, 2]),
        baseline=lambda x: 2.0 * x[:, 3] + x[:, 4] ** 2,
        propensity=lambda x: np.full(x.shape[0], 0.3),
    ),
    Setting(
        name="confounded",
        description="tau = 1 + x0 - x1^2; e(x) = sigmoid(x1 + x3) known and logged",
        tau=lambda x: 1.0 + x[:, 0] - x[:, 1] ** 2,
        baseline=lambda x: 1.5 * x[:, 1] + x[:, 3] + 0.5 * x[:, 4] ** 2,
        propensity=lambda x: np.clip(_sigmoid(x[:, 1] + x[:, 3]), 0.1, 0.9),
    ),
)


def simulate(
    setting: Setting, n: int, rng: np.random.Generator
) -> tuple[FloatArray, NDArray[np.int64], FloatArray, FloatArray, FloatArray]:
    """``(X, T, Y, propensity, true_effect)`` for ``n`` rows."""
    x = rng.uniform(-1.0, 1.0, size=(n, setting.d))
    e = setting.propensity(x)
    t = (rng.random(n) < e).astype(np.int64)
    tau = setting.tau(x)
    y = setting.baseline(x) + t * tau + setting.noise * rng.normal(size=n)
    return x, t, y, e, tau


def rmse(a: FloatArray, b: FloatArray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def run(n: int, seeds: int, n_test: int = 5000) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for setting in SETTINGS:
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            x, t, y, e, _ = simulate(setting, n, rng)
            x_test, *_, tau_test = simulate(setting, n_test, rng)
            row: dict[str, object] = {"setting": setting.name, "seed": seed}
            t0 = time.perf_counter()
            for name in LEARNERS:
                est = fit_cate(x, t, y, learner=name, propensity=e, random_state=seed)
                row[name] = rmse(est.effect(x_test), tau_test)
            row["fixed_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            auto = fit_cate(x, t, y, learner="auto", propensity=e, random_state=seed)
            row["auto_seconds"] = time.perf_counter() - t0
            row["auto"] = rmse(auto.effect(x_test), tau_test)
            row["auto_pick"] = auto.learner_name
            best = min(LEARNERS, key=lambda k: float(row[k]))  # type: ignore[arg-type]
            row["best"] = best
            row["ratio"] = float(row["auto"]) / float(row[best])  # type: ignore[arg-type]
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


def _format_row(row: dict[str, object]) -> str:
    cells = " ".join(f"{float(row[k]):>13.3f}" for k in LEARNERS)  # type: ignore[arg-type]
    return (
        f"{row['setting']:<11} {row['seed']:>4} {cells} {float(row['auto']):>7.3f}"  # type: ignore[arg-type]
        f"  {row['auto_pick']!s:<13} {float(row['ratio']):>5.2f}"  # type: ignore[arg-type]
        f"  {float(row['auto_seconds']):>6.1f}s"  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="n = 3000 and one seed")
    parser.add_argument("--n", type=int, default=None, help="training rows per run")
    parser.add_argument("--seeds", type=int, default=None, help="runs per setting")
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 8000)
    seeds = args.seeds or (1 if args.quick else 3)
    print(f"HTE benchmark: n = {n} training rows, {seeds} seed(s) per setting, RMSE on 5000 new rows")
    for s in SETTINGS:
        print(f"  {s.name:<11} {s.description}")
    header = " ".join(f"{k:>13}" for k in LEARNERS)
    print(f"{'setting':<11} {'seed':>4} {header} {'auto':>7}  {'auto picks':<13} {'ratio':>5}  {'time':>7}")
    rows = run(n, seeds)
    print("\nmean over seeds (RMSE) and auto / best fixed learner")
    for s in SETTINGS:
        part = [r for r in rows if r["setting"] == s.name]
        means = {k: float(np.mean([float(r[k]) for r in part])) for k in (*LEARNERS, "auto")}  # type: ignore[arg-type]
        best = min(LEARNERS, key=lambda k: means[k])
        worst_ratio = max(float(r["ratio"]) for r in part)  # type: ignore[arg-type]
        cells = " ".join(f"{means[k]:>13.3f}" for k in LEARNERS)
        print(
            f"{s.name:<11} {'mean':>4} {cells} {means['auto']:>7.3f}"
            f"  best={best}, auto/best = {means['auto'] / means[best]:.2f}"
            f" (worst single run {worst_ratio:.2f})"
        )


if __name__ == "__main__":
    main()
