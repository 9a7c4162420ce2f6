"""Compiled serving: the compiled model against ``lightgbm.Booster.predict``.

One run trains a LightGBM model (200 trees of 63 leaves over 30 features, binary, on
synthetic data), compiles it with ``compile_lightgbm`` and measures, each against a
baseline run in the same process:

  (1) ``CompiledModel.predict_one`` on one row against ``Booster.predict`` on the same
      row (µs per call; goal: >= 10x faster), asserting identical results;
  (2) ``CompiledModel.predict`` on 100,000 rows against ``Booster.predict`` with the same
      number of threads (goal: >= 5x faster), asserting identical results;
  (3) the in-process ``get_decision`` against ``Booster.predict`` on one row (placeholder);
  (4) HTTP throughput of the decision service (placeholder).

    python bench/serving.py            # full run
    python bench/serving.py --quick    # fewer repetitions and rows

Timings are the best of several repeats (the least disturbed by other processes).
Results are also written to bench/.out/serving.json.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path and bench/logging.py would
# shadow the standard library's ``logging`` for every library imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402

from looper_pipelines.serving.compiled import CompiledModel, compile_lightgbm  # noqa: E402

N_TREES = 200
N_LEAVES = 63
N_FEATURE = 30


def train_model(n_rows: int = 20_000, seed: int = 0) -> tuple[lgb.Booster, np.ndarray]:
    """A binary model of exactly ``N_TREES`` trees with ``N_LEAVES`` leaves each."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURE))
    X[rng.random(X.shape) < 0.05] = np.nan
    z = np.nan_to_num(X)
    logit = z[:, :6].sum(axis=1) + np.sin(3 * z[:, 6]) + z[:, 7] * z[:, 8] - 0.5 * z[:, 9] ** 2
    y = (logit + rng.normal(size=n_rows) > 0).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": N_LEAVES,
        "min_data_in_leaf": 5,
        "learning_rate": 0.05,
        "verbose": -1,
        "seed": seed,
    }
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=N_TREES)
    assert booster.num_trees() == N_TREES
    return booster, X


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best mean µs per call over ``repeat`` runs of ``number`` calls."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def _best_s(fn: Callable[[], object], repeat: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def bench_predict_one(
    model: CompiledModel, booster: lgb.Booster, rows: np.ndarray, quick: bool
) -> dict[str, Any]:
    """(1) one row: predict_one (ndarray and list input) against Booster.predict."""
    number, repeat = (2_000, 5) if quick else (20_000, 7)
    b_number = number // 10
    x = np.ascontiguousarray(rows[0])
    x_list = x.tolist()
    x_2d = x.reshape(1, -1)

    # identical results on many rows, both input kinds
    expected = booster.predict(rows)
    got = np.array([model.predict_one(r) for r in rows])
    got_list = np.array([model.predict_one(r.tolist()) for r in rows])
    diff = float(max(np.abs(got - expected).max(), np.abs(got_list - expected).max()))
    assert diff <= 1e-12, f"predict_one differs from Booster.predict by {diff}"

    impl = model._impl  # the raw library call, for the overhead breakdown
    raw_call: Callable[[], object] | None = None
    if model.backend == "native":
        buf = impl.in_type(*x_list)  # type: ignore[union-attr]
        one = impl.one  # type: ignore[union-attr]

        def raw_call() -> object:
            return one(buf)

    # the same row over and over (branch predictors learn its path) ...
    compiled_np = best_us(lambda: model.predict_one(x), number, repeat)
    compiled_list = best_us(lambda: model.predict_one(x_list), number, repeat)
    raw = best_us(raw_call, number, repeat) if raw_call else None
    lgb_default = best_us(lambda: booster.predict(x_2d), b_number, repeat)
    lgb_1t = best_us(lambda: booster.predict(x_2d, num_threads=1), b_number, repeat)
    lgb_best = min(lgb_default, lgb_1t)
    # ... and a different row each call, as in serving
    many = [np.ascontiguousarray(r) for r in rows[:1000]]
    many_2d = [r.reshape(1, -1) for r in many]
    it_c, it_b = itertools.cycle(many), itertools.cycle(many_2d)
    varied_c = best_us(lambda: model.predict_one(next(it_c)), number, repeat)
    varied_b = best_us(lambda: booster.predict(next(it_b), num_threads=1), b_number, repeat)
    varied_b_default = best_us(lambda: booster.predict(next(it_b)), b_number, repeat)
    varied_b_best = min(varied_b, varied_b_default)
    return {
        "rows_checked": len(rows),
        "max_abs_diff": diff,
        "compiled_predict_one_ndarray_us": compiled_np,
        "compiled_predict_one_list_us": compiled_list,
        "compiled_library_call_us": raw,
        "booster_predict_us": lgb_default,
        "booster_predict_1thread_us": lgb_1t,
        "ratio_ndarray": lgb_best / compiled_np,
        "ratio_list": lgb_best / compiled_list,
        "varied_rows_compiled_us": varied_c,
        "varied_rows_booster_us": varied_b_default,
        "varied_rows_booster_1thread_us": varied_b,
        "ratio_varied_rows": varied_b_best / varied_c,
    }


def bench_batch(
    model: CompiledModel, booster: lgb.Booster, X: np.ndarray, quick: bool
) -> dict[str, Any]:
    """(2) a batch: predict against Booster.predict, with the same thread counts."""
    repeat = 2 if quick else 3
    out: dict[str, Any] = {"rows": len(X)}
    cpus = os.cpu_count() or 1
    for threads in sorted({1, cpus}):
        expected = booster.predict(X, num_threads=threads)
        got = model.predict(X, num_threads=threads)
        diff = float(np.abs(got - expected).max())
        assert diff <= 1e-12, f"predict differs from Booster.predict by {diff}"
        t_lgb = _best_s(lambda n=threads: booster.predict(X, num_threads=n), repeat)
        t_cmp = _best_s(lambda n=threads: model.predict(X, num_threads=n), repeat)
        out[f"threads_{threads}"] = {
            "booster_predict_s": t_lgb,
            "compiled_predict_s": t_cmp,
            "booster_us_per_row": t_lgb / len(X) * 1e6,
            "compiled_us_per_row": t_cmp / len(X) * 1e6,
            "ratio": t_lgb / t_cmp,
            "max_abs_diff": diff,
        }
    return out


# --------------------------------------------------------------------------------------
# Placeholders for the two measurements still to be added.
# --------------------------------------------------------------------------------------


def bench_get_decision(model_artifact: Path, booster: lgb.Booster, quick: bool) -> dict | None:
    """(3) PLACEHOLDER: full in-process ``get_decision`` against ``Booster.predict`` on one row.

    To add: serve ``model_artifact`` through ``LooperClient.local(home)`` for a blueprint
    with these 30 features and time ``get_decision(use_case, subject_id, features)``
    (logging included) against ``booster.predict`` on the same row. Return a dict of
    figures like the other measurements; ``None`` means "not measured".
    """
    return None


def bench_http_throughput(model_artifact: Path, quick: bool) -> dict | None:
    """(4) PLACEHOLDER: decisions per second through the HTTP service on this machine.

    To add: start the decision service on 127.0.0.1 with ``model_artifact`` as champion,
    drive it with a bounded number of requests from a few concurrent clients, report
    requests/s and latency percentiles, stop the server. ``None`` means "not measured".
    """
    return None


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and rows")
    ap.add_argument("--rows", type=int, default=None, help="batch rows (default 100,000)")
    args = ap.parse_args(argv)
    quick: bool = args.quick
    n_batch = args.rows or (20_000 if quick else 100_000)

    t0 = time.perf_counter()
    booster, _ = train_model(10_000 if quick else 20_000)
    t_train = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    X_eval = rng.normal(size=(n_batch, N_FEATURE))
    X_eval[rng.random(X_eval.shape) < 0.05] = np.nan

    results: dict[str, Any] = {
        "model": {"trees": N_TREES, "leaves": N_LEAVES, "features": N_FEATURE},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "lightgbm": lgb.__version__,
        },
        "quick": quick,
        "train_s": t_train,
    }
    with tempfile.TemporaryDirectory(prefix="looper-bench-serving-") as tmp:
        t0 = time.perf_counter()
        manifest = compile_lightgbm(booster, Path(tmp) / "model", metadata={"bench": True})
        results["compile_s"] = time.perf_counter() - t0
        model = CompiledModel.load(manifest)
        results["backend"] = model.backend
        results["parallel_comp"] = model.manifest["build"]["parallel_comp"]
        print(
            f"model: {N_TREES} trees x {N_LEAVES} leaves x {N_FEATURE} features; "
            f"trained in {t_train:.1f} s, compiled ({model.backend}, "
            f"parallel_comp={results['parallel_comp']}) in {results['compile_s']:.1f} s"
        )

        one = bench_predict_one(model, booster, X_eval[:2_000], quick)
        results["predict_one"] = one
        raw = one["compiled_library_call_us"]
        print("\n(1) one row")
        print(f"  Booster.predict (default threads) {one['booster_predict_us']:9.2f} us/call")
        print(
            f"  Booster.predict (num_threads=1)   {one['booster_predict_1thread_us']:9.2f} us/call"
        )
        print(
            f"  predict_one, ndarray row          {one['compiled_predict_one_ndarray_us']:9.2f} us/call"
        )
        print(
            f"  predict_one, list row             {one['compiled_predict_one_list_us']:9.2f} us/call"
        )
        if raw is not None:
            print(f"  (library call alone               {raw:9.2f} us/call)")
        print(
            f"  varied rows: predict_one {one['varied_rows_compiled_us']:.2f} us, "
            f"Booster.predict {one['varied_rows_booster_us']:.2f} us "
            f"(num_threads=1: {one['varied_rows_booster_1thread_us']:.2f} us)"
        )
        print(
            f"  ratio vs faster Booster.predict: {one['ratio_ndarray']:.1f}x (ndarray), "
            f"{one['ratio_list']:.1f}x (list), {one['ratio_varied_rows']:.1f}x (varied rows); "
            f"identical on {one['rows_checked']} rows (max abs diff {one['max_abs_diff']:.1e})"
        )

        batch = bench_batch(model, booster, X_eval, quick)
        results["batch"] = batch
        print(f"\n(2) batch of {n_batch:,} rows")
        for key, r in batch.items():
            if not key.startswith("threads_"):
                continue
            print(
                f"  {key.split('_')[1]} thread(s): Booster.predict {r['booster_predict_s'] * 1e3:8.1f} ms, "
                f"compiled {r['compiled_predict_s'] * 1e3:8.1f} ms -> {r['ratio']:.1f}x"
            )

        for name, fn in (
            ("get_decision", lambda: bench_get_decision(manifest, booster, quick)),
            ("http", lambda: bench_http_throughput(manifest, quick)),
        ):
            res = fn()
            results[name] = res
            if res is None:
                print(f"\n({name}) not measured yet")

    out_dir = Path(__file__).resolve().parent / ".out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "serving.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
