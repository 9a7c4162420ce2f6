"""Heterogeneous treatment effects: does ``learner="auto"`` pick as well as the best learner?

Simulated experiments with known per-row effects. For each setting and seed, fit every
fixed learner and ``auto`` on the same rows and report the root-mean-square error of the
effect estimates on fresh rows, and the ratio auto / best fixed learner (goal: <= 1.10).

    python bench/hte.py            # n = 8000, 3 seeds per setting
    python bench/hte.py --quick    # n = 3000, 1 seed
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this folder comes first on the import path, where another benchmark's
# module named like a standard-library one (logging.py) would shadow it for every library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from looper_pipelines.causal import LEARNERS, fit_cate  # noqa: E402

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


@dataclass(frozen=True)
class RunResult:
    setting: str
    seed: int
    fixed: dict[str, float]  # RMSE of each fixed learner
    auto: float  # RMSE of learner="auto"
    auto_pick: str
    auto_seconds: float
    fixed_seconds: float

    @property
    def best(self) -> str:
        return min(self.fixed, key=lambda k: self.fixed[k])

    @property
    def ratio(self) -> float:
        return self.auto / self.fixed[self.best]


def run_one(setting: Setting, n: int, seed: int, n_test: int = 5000) -> RunResult:
    rng = np.random.default_rng(1000 + seed)
    x, t, y, e, _ = simulate(setting, n, rng)
    x_test, *_, tau_test = simulate(setting, n_test, rng)
    t0 = time.perf_counter()
    fixed = {
        name: rmse(
            fit_cate(x, t, y, name, propensity=e, random_state=seed).effect(x_test), tau_test
        )
        for name in LEARNERS
    }
    fixed_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    auto = fit_cate(x, t, y, "auto", propensity=e, random_state=seed)
    auto_seconds = time.perf_counter() - t0
    return RunResult(
        setting=setting.name,
        seed=seed,
        fixed=fixed,
        auto=rmse(auto.effect(x_test), tau_test),
        auto_pick=auto.learner_name,
        auto_seconds=auto_seconds,
        fixed_seconds=fixed_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="HTE benchmark: auto vs fixed learners")
    parser.add_argument("--quick", action="store_true", help="n = 3000 and one seed")
    parser.add_argument("--n", type=int, default=None, help="training rows per run")
    parser.add_argument("--seeds", type=int, default=None, help="runs per setting")
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 8000)
    seeds = args.seeds or (1 if args.quick else 3)
    print(f"HTE benchmark: n = {n} training rows, {seeds} seed(s) per setting;")
    print("RMSE of the effect estimates on 5000 new rows (lower is better)")
    for s in SETTINGS:
        print(f"  {s.name:<11} {s.description}")
    names = " ".join(f"{k:>13}" for k in LEARNERS)
    print(f"\n{'setting':<11} {'seed':>4} {names} {'auto':>7}  {'auto picks':<13} auto/best")
    results: list[RunResult] = []
    for setting in SETTINGS:
        for seed in range(seeds):
            r = run_one(setting, n, seed)
            results.append(r)
            cells = " ".join(f"{r.fixed[k]:>13.3f}" for k in LEARNERS)
            print(
                f"{r.setting:<11} {r.seed:>4} {cells} {r.auto:>7.3f}  {r.auto_pick:<13}"
                f" {r.ratio:>8.2f}   (auto {r.auto_seconds:.1f}s, all fixed {r.fixed_seconds:.1f}s)",
                flush=True,
            )
    print("\nmean RMSE over seeds; auto / best fixed learner")
    for s in SETTINGS:
        part = [r for r in results if r.setting == s.name]
        means = {k: float(np.mean([r.fixed[k] for r in part])) for k in LEARNERS}
        auto_mean = float(np.mean([r.auto for r in part]))
        best = min(LEARNERS, key=lambda k: means[k])
        cells = " ".join(f"{means[k]:>13.3f}" for k in LEARNERS)
        print(
            f"{s.name:<11} {'mean':>4} {cells} {auto_mean:>7.3f}  best: {best},"
            f" auto/best = {auto_mean / means[best]:.2f},"
            f" worst single run {max(r.ratio for r in part):.2f}"
        )
    overall = float(np.mean([r.ratio for r in results]))
    print(f"\nmean over all runs of auto / best fixed learner (same run): {overall:.2f}")


if __name__ == "__main__":
    main()
