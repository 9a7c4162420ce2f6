"""Compiled serving: the compiled model against ``lightgbm.Booster.predict``.

One run trains a LightGBM model (200 trees of 63 leaves over 30 features, binary, on
synthetic data), compiles it with ``compile_lightgbm`` and measures, each against a
baseline run in the same process:

  (1) ``CompiledModel.predict_one`` on one row against ``Booster.predict`` on the same
      row (µs per call; goal: >= 10x faster), asserting identical results; also with a
      different row on every call;
  (2) ``CompiledModel.predict`` on 100,000 rows against ``Booster.predict`` with the same
      number of threads (goal: >= 5x faster), asserting identical results;
  (3) the in-process ``get_decision`` (two compiled label models, policy, durable log)
      against ``Booster.predict`` on one row;
  (4) HTTP throughput: see ``bench/http_service.py``.

The library serves through its branch-free tree walk (``serving.branch_free``); (1) and (2)
also show the same library through TL2cgen's walk.

    python bench/serving.py            # full run
    python bench/serving.py --quick    # fewer repetitions, 20,000-row batch

The variants of a measurement alternate in rounds, so that all see the same machine load;
each figure is the best round. Besides wall-clock time it reports CPU time (of the
calling thread for one-thread figures, of the process for multi-thread ones), which moves
much less with other load on the machine. Results are also written to
bench/.out/serving.json.
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
import math  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402

from looper_pipelines.serving.compiled import CompiledModel, compile_lightgbm  # noqa: E402

N_TREES = 200
N_LEAVES = 63
N_FEATURE = 30


def train_model(n_rows: int = 20_000, seed: int = 0) -> lgb.Booster:
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
    return booster


def interleaved(
    variants: dict[str, tuple[Callable[[], object], int]],
    rounds: int,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> dict[str, dict[str, float]]:
    """Best µs per call (wall and CPU) of each variant; variants alternate every round."""
    best = {name: [math.inf, math.inf] for name in variants}
    for fn, _ in variants.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, (fn, number) in variants.items():
            w0, c0 = time.perf_counter(), cpu_clock()
            for _ in range(number):
                fn()
            wall, cpu = time.perf_counter() - w0, cpu_clock() - c0
            best[name][0] = min(best[name][0], wall / number * 1e6)
            best[name][1] = min(best[name][1], cpu / number * 1e6)
    return {name: {"wall_us": w, "cpu_us": c} for name, (w, c) in best.items()}


def bench_predict_one(
    model: CompiledModel,
    booster: lgb.Booster,
    rows: np.ndarray,
    quick: bool,
    tl2cgen: CompiledModel | None = None,
) -> dict[str, Any]:
    """(1) one row: predict_one (ndarray and list input) against Booster.predict; with
    ``tl2cgen`` (the same library through TL2cgen's walk) shown beside it."""
    number, rounds = (2_000, 5) if quick else (10_000, 9)
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

    many = [np.ascontiguousarray(r) for r in rows[:1000]]
    it_c, it_b = itertools.cycle(many), itertools.cycle([r.reshape(1, -1) for r in many])
    variants: dict[str, tuple[Callable[[], object], int]] = {
        # the same row over and over (branch predictors learn its path) ...
        "booster_predict": (lambda: booster.predict(x_2d), b_number),
        "booster_predict_1thread": (lambda: booster.predict(x_2d, num_threads=1), b_number),
        "predict_one_ndarray": (lambda: model.predict_one(x), number),
        "predict_one_list": (lambda: model.predict_one(x_list), number),
        # ... and a different row on every call, as in serving
        "varied_booster_predict": (lambda: booster.predict(next(it_b)), b_number),
        "varied_booster_predict_1thread": (
            lambda: booster.predict(next(it_b), num_threads=1),
            b_number,
        ),
        "varied_predict_one": (lambda: model.predict_one(next(it_c)), number),
    }
    if tl2cgen is not None:
        it_t = itertools.cycle(many)
        variants["tl2cgen_predict_one"] = (lambda: tl2cgen.predict_one(x), number)
        variants["varied_tl2cgen_predict_one"] = (lambda: tl2cgen.predict_one(next(it_t)), number)
    if model.backend == "native":  # the bare library call, for the overhead breakdown
        impl: Any = model._impl
        buf, one = impl.in_type(*x_list), impl.one
        variants["library_call"] = (lambda: one(buf), number)
    res: dict[str, Any] = interleaved(variants, rounds)

    def ratio(base: list[str], ours: str, key: str) -> float:
        return min(res[b][key] for b in base) / res[ours][key]

    same = ["booster_predict", "booster_predict_1thread"]
    varied = ["varied_booster_predict", "varied_booster_predict_1thread"]
    for key in ("wall_us", "cpu_us"):
        unit = key.split("_")[0]
        res[f"ratio_ndarray_{unit}"] = ratio(same, "predict_one_ndarray", key)
        res[f"ratio_list_{unit}"] = ratio(same, "predict_one_list", key)
        res[f"ratio_varied_{unit}"] = ratio(varied, "varied_predict_one", key)
    res["rows_checked"] = len(rows)
    res["max_abs_diff"] = diff
    return res


def bench_batch(
    model: CompiledModel,
    booster: lgb.Booster,
    X: np.ndarray,
    quick: bool,
    tl2cgen: CompiledModel | None = None,
) -> dict[str, Any]:
    """(2) a batch: predict against Booster.predict, with the same thread counts (and the
    TL2cgen walk of the same library, when given)."""
    rounds = 3 if quick else 5
    out: dict[str, Any] = {"rows": len(X)}
    cpus = os.cpu_count() or 1
    for threads in sorted({1, cpus}):
        expected = booster.predict(X, num_threads=threads)
        got = model.predict(X, num_threads=threads)
        diff = float(np.abs(got - expected).max())
        assert diff <= 1e-12, f"predict differs from Booster.predict by {diff}"
        clock = time.thread_time if threads == 1 else time.process_time
        variants: dict[str, tuple[Callable[[], object], int]] = {
            "booster": (lambda n=threads: booster.predict(X, num_threads=n), 1),
            "compiled": (lambda n=threads: model.predict(X, num_threads=n), 1),
        }
        if tl2cgen is not None:
            variants["tl2cgen"] = (lambda n=threads: tl2cgen.predict(X, num_threads=n), 1)
        res = interleaved(variants, rounds, clock)
        out[f"threads_{threads}"] = {
            "booster_ms": res["booster"]["wall_us"] / 1e3,
            "compiled_ms": res["compiled"]["wall_us"] / 1e3,
            "booster_cpu_ms": res["booster"]["cpu_us"] / 1e3,
            "compiled_cpu_ms": res["compiled"]["cpu_us"] / 1e3,
            "ratio_wall": res["booster"]["wall_us"] / res["compiled"]["wall_us"],
            "ratio_cpu": res["booster"]["cpu_us"] / res["compiled"]["cpu_us"],
            "max_abs_diff": diff,
        }
        if tl2cgen is not None:
            out[f"threads_{threads}"]["tl2cgen_ms"] = res["tl2cgen"]["wall_us"] / 1e3
    return out


def bench_get_decision(model_artifact: Path, booster: lgb.Booster, quick: bool) -> dict | None:
    """(3) The full in-process ``get_decision`` (validation, compiled models for every action,
    policy, durable log at the default durability) against ``Booster.predict`` on one row.

    The notification use case is served by two compiled label models of the same size as the
    reference model (200 trees of 63 leaves), published and hot-loaded as in production.
    """
    import tempfile

    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.client import LooperClient
    from looper_pipelines.home import HomeLayout
    from looper_pipelines.serving.publish import activate, build_artifact

    uc = "notification_send"
    bp = load_catalog()[uc]
    rng = np.random.default_rng(3)
    n_feat = len(bp.features) + 1
    x = rng.normal(size=(20_000, n_feat))
    x[:, -1] = rng.integers(0, 2, len(x))
    # as the trainer does: category features and the action are LightGBM categoricals
    categorical = [i for i, f in enumerate(bp.features) if f.type == "category"] + [n_feat - 1]
    for i in categorical[:-1]:
        x[:, i] = rng.integers(0, len(bp.features[i].categories or []), len(x))
    params = {"objective": "binary", "num_leaves": 63, "min_data_in_leaf": 5, "verbosity": -1, "seed": 3}
    boosters = {
        label: lgb.train(params, lgb.Dataset(x, (rng.random(len(x)) < 1 / (1 + np.exp(-x[:, 0] * (1 + x[:, -1])))).astype(float),
                                         categorical_feature=categorical),
                         num_boost_round=200 if not quick else 50)
        for label in ("click", "unsubscribe")
    }
    # a different subject on every call, as in serving
    platforms = ["ios", "android", "web"]
    subjects = [
        {"tenure_days": float(rng.exponential(200)), "hour_of_day": int(rng.integers(0, 24)),
         "notif_open_rate": float(rng.random()), "platform": platforms[int(rng.integers(0, 3))],
         "sessions_last_7d": int(rng.poisson(3)), "days_since_last_visit": float(rng.exponential(10))}
        for _ in range(1000)
    ]  # fmt: skip
    cycle_a, cycle_b = itertools.cycle(subjects), itertools.cycle(subjects)
    with tempfile.TemporaryDirectory() as home:
        layout = HomeLayout.of(home)
        build_artifact(layout, uc, "bench", boosters, [*bp.feature_names, "action"], {
            "model_version": "bench", "policy_version": "bench", "policy_params": {},
            "blueprint_version": bp.version, "lineage_version": bp.lineage_version})
        activate(layout, uc, "bench")
        client = LooperClient.local(home)
        quiet = LooperClient.local(home, log_durability="disabled")
        assert client.deployment(uc).model_version == "bench"
        ref_rows = itertools.cycle(list(rng.normal(size=(1000, 1, booster.num_feature()))))
        number, rounds = (500, 3) if quick else (3_000, 7)
        res = interleaved({
            "booster_predict": (lambda: booster.predict(next(ref_rows)), number),
            "get_decision": (lambda: client.get_decision(uc, "u1", next(cycle_a)), number),
            "get_decision_no_log": (lambda: quiet.get_decision(uc, "u1", next(cycle_b)), number),
        }, rounds)
        client.close()
        quiet.close()
    ratio = res["booster_predict"]["wall_us"] / res["get_decision"]["wall_us"]
    print("\n(3) full get_decision (a different subject each call) vs Booster.predict, one row   wall µs/call")
    for k, v in res.items():
        print(f"  {k:22s} {v['wall_us']:8.1f}")
    print(f"  Booster.predict / get_decision = {ratio:.2f}x (get_decision scores 2 labels x 2 actions, "
          f"applies the policy and logs durably)")
    return {**res, "ratio_booster_over_get_decision": ratio}


def bench_http_throughput(model_artifact: Path, quick: bool) -> dict | None:
    """(4) HTTP throughput lives in ``bench/http_service.py`` (it needs an external load
    generator, wrk, and reference servers); run it separately."""
    print("\n(4) HTTP: run python bench/http_service.py (wrk against the service and two reference servers)")
    return None


# --------------------------------------------------------------------------------------


def _print_one_row(one: dict[str, Any]) -> None:
    print("\n(1) one row                              wall µs/call   CPU µs/call")
    labels = [
        ("booster_predict", "Booster.predict (default threads)"),
        ("booster_predict_1thread", "Booster.predict (num_threads=1)"),
        ("predict_one_ndarray", "predict_one, ndarray row"),
        ("predict_one_list", "predict_one, list row"),
        ("library_call", "  ctypes call alone (filled buffer)"),
        ("varied_booster_predict", "varied rows: Booster.predict"),
        ("varied_booster_predict_1thread", "varied rows: Booster.predict, 1 thr"),
        ("varied_predict_one", "varied rows: predict_one"),
        ("tl2cgen_predict_one", "TL2cgen walk: predict_one, same row"),
        ("varied_tl2cgen_predict_one", "TL2cgen walk: predict_one, varied"),
    ]
    for key, label in labels:
        if key in one:
            print(f"  {label:37s} {one[key]['wall_us']:10.2f}   {one[key]['cpu_us']:10.2f}")
    print(
        "  ratio vs faster Booster.predict (wall / CPU): "
        f"ndarray {one['ratio_ndarray_wall']:.1f}x / {one['ratio_ndarray_cpu']:.1f}x, "
        f"list {one['ratio_list_wall']:.1f}x / {one['ratio_list_cpu']:.1f}x, "
        f"varied rows {one['ratio_varied_wall']:.1f}x / {one['ratio_varied_cpu']:.1f}x"
    )
    print(
        f"  identical results on {one['rows_checked']} rows "
        f"(max abs diff {one['max_abs_diff']:.1e})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and rows")
    ap.add_argument("--rows", type=int, default=None, help="batch rows (default 100,000)")
    args = ap.parse_args(argv)
    quick: bool = args.quick
    n_batch = args.rows or (20_000 if quick else 100_000)

    t0 = time.perf_counter()
    booster = train_model(10_000 if quick else 20_000)
    t_train = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    X_eval = rng.normal(size=(n_batch, N_FEATURE))
    X_eval[rng.random(X_eval.shape) < 0.05] = np.nan

    results: dict[str, Any] = {
        "model": {"trees": N_TREES, "leaves": N_LEAVES, "features": N_FEATURE},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
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
        tl2cgen = CompiledModel.load(manifest, branch_free=False) if model.tree_walk == "branch_free" else None
        results["backend"] = model.backend
        results["tree_walk"] = model.tree_walk
        results["parallel_comp"] = model.manifest["build"]["parallel_comp"]
        print(
            f"model: {N_TREES} trees x {N_LEAVES} leaves x {N_FEATURE} features; "
            f"trained in {t_train:.1f} s, compiled ({model.backend}, {model.tree_walk} walk, "
            f"parallel_comp={results['parallel_comp']}) in {results['compile_s']:.1f} s; "
            f"load average {os.getloadavg()[0]:.1f}"
        )

        one = bench_predict_one(model, booster, X_eval[:2_000], quick, tl2cgen)
        results["predict_one"] = one
        _print_one_row(one)

        batch = bench_batch(model, booster, X_eval, quick, tl2cgen)
        results["batch"] = batch
        print(f"\n(2) batch of {n_batch:,} rows            wall ms (CPU ms)")
        for key, r in batch.items():
            if not key.startswith("threads_"):
                continue
            print(
                f"  {key.split('_')[1]} thread(s): Booster.predict {r['booster_ms']:7.1f} "
                f"({r['booster_cpu_ms']:7.1f}), compiled {r['compiled_ms']:7.1f} "
                f"({r['compiled_cpu_ms']:7.1f}) -> {r['ratio_wall']:.1f}x wall, "
                f"{r['ratio_cpu']:.1f}x CPU; max abs diff {r['max_abs_diff']:.1e}"
                + (f"; TL2cgen walk {r['tl2cgen_ms']:.1f} ms" if "tl2cgen_ms" in r else "")
            )

        for name, fn in (
            ("get_decision", lambda: bench_get_decision(manifest, booster, quick)),
            ("http", lambda: bench_http_throughput(manifest, quick)),
        ):
            res = fn()
            results[name] = res
            if res is None:
                print(f"\n({name}) not measured yet")

    results["machine"]["load_average_end"] = os.getloadavg()
    out_dir = Path(__file__).resolve().parent / ".out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "serving.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
