"""Compiled LightGBM models: build (Treelite → TL2cgen shared library) and load (ctypes).

Build side (the export step; needs lightgbm, treelite, tl2cgen and a C compiler)::

    path = compile_lightgbm(booster, "artifacts/notif/v7", metadata={"model_version": "7"})
    # -> artifacts/notif/v7/manifest.json

Serving side (ctypes + numpy only)::

    m = CompiledModel.load(path)        # the manifest path or the artifact folder
    p = m.predict_one([0.3, float("nan"), 2.0, ...])    # float (or (K,) array)
    P = m.predict(X)                                     # (n,) or (n, K)

``compile_lightgbm`` writes the artifact folder ``out_dir`` (see
:mod:`looper_pipelines.serving.manifest` for its layout) and returns the path of its
``manifest.json``. The folder is assembled in a hidden sibling folder and renamed into
place at the end, so a reader sees either no artifact or a complete one. ``out_dir``
must not exist yet (or be an empty folder): artifacts are immutable, publish each model
version into a new folder.

Backends: ``"native"`` is the TL2cgen library plus a small C shim compiled into the same
library (``looper_pipelines.serving._shim``), called directly through ctypes with no
DMatrix and no per-call allocation. Before compilation TL2cgen's numerical split tests are
rewritten to compare NaN directly and sibling leaves become branch-free table lookups
(``_shim.rewrite_tree_code``: exact, same trees and summation order). For one-output
models (binary and regression-type objectives) the library also gets a branch-free walk of
the same trees
(``looper_pipelines.serving.branch_free``: node tables walked 16 trees in lockstep,
bit-identical to LightGBM), which then serves single rows, batches and varied rows: on a
row the branch predictors have not seen it is about 2.5x faster than TL2cgen's if/else
code, on batches about 1.8x (``CompiledModel.tree_walk`` says which walk serves;
``load(..., branch_free=False)`` picks TL2cgen's). Where no C compiler is found or
compilation fails, the artifact falls back to ``"gtil"``: Treelite's tree-inference library
on the Treelite checkpoint, correct but much slower per call, with a warning logged.

Before loading, ``CompiledModel.load`` checks the manifest's own checksum and the SHA-256
of every file it uses; the shared library is hashed from memory and those same bytes are
what gets loaded (through an anonymous memory file on Linux), so a file swapped after the
check is never executed. A mismatch raises :class:`IntegrityError`.

Inputs: one value per feature in the manifest's ``feature_names`` order; NaN (or None in a
list) means missing; categorical features take LightGBM's integer category codes.
Outputs match ``lightgbm.Booster.predict``: probability for binary, value for regression,
(K,) class probabilities for multiclass.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import itertools
import logging
import math
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from looper_pipelines.serving import lightgbm_text
from looper_pipelines.serving._shim import (
    ABI_VERSION,
    OPTIONAL_SYMBOLS,
    SHIM_SYMBOLS,
    block_rows,
    parse_predict,
    reads_missing_word,
    rewrite_tree_code,
    shim_source,
)
from looper_pipelines.serving.branch_free import (
    BRANCH_FREE_SYMBOLS,
    Unsupported,
    branch_free_source,
)
from looper_pipelines.serving.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ArtifactError,
    IntegrityError,
    canonical_json,
    read_manifest,
    sha256_bytes,
    sha256_file,
    write_manifest,
)

try:  # one-row calls without ctypes (setup.py builds it when a C compiler is there)
    from looper_pipelines.serving import _rowcall
except ImportError:  # pragma: no cover - not built: the ctypes closures serve
    _rowcall = None  # type: ignore[assignment]

if TYPE_CHECKING:  # build-time only; never imported on the serving path
    import lightgbm

__all__ = [
    "ArtifactError",
    "CompiledModel",
    "IntegrityError",
    "ParityError",
    "check_parity",
    "compile_lightgbm",
]

log = logging.getLogger(__name__)

LIBRARY_STEM: Final = "model"
TREELITE_NAME: Final = "model.tl"
DEFAULT_TOOLCHAIN: Final = "gcc"
# Appended to TL2cgen's "-O3" (the last -O counts). On TL2cgen's own trees, whose every
# test first checks the missing word, -Os won: -O2/-O3 duplicated code paths per
# missing-value pattern (jump threading) and moved the common path out of line. After
# rewrite_tree_code (NaN-based tests, one branch per node) that is gone, and -O1 measured
# best on 200 trees x 63 leaves: a fresh row 4.9 µs (-O2 5.1, -O3 5.1, -Os 6.2), a
# repeated row 0.95 (-Os 1.1), batches within 5 % of each other; it also builds fastest.
# No -march/-mtune: the library must run on any machine of the same architecture.
# -Bsymbolic binds the library's internal calls (predict, postprocess, predict_unitN)
# to its own definitions whatever else the process has loaded.
DEFAULT_COMPILER_OPTIONS: Final = ("-O1", "-Wl,-Bsymbolic")
# Leaves per translation unit when choosing parallel_comp automatically. Small units
# compile faster in total (the compiler is superlinear in function size) and make the
# blocked batch path faster (a unit's code stays in cache over a block of rows): for 200
# trees of 63 leaves, 40 units built in ~11 s and ran batches ~1.2x faster than 13 units
# (19 s); 100 units were no better.
_LEAVES_PER_UNIT: Final = 300
# Rows per thread below which batch prediction stays on the calling thread.
_MIN_ROWS_PER_THREAD: Final = 4096

Backend = Literal["native", "gtil"]
ModelLike = Any  # lightgbm.Booster | lightgbm.LGBMModel | str | os.PathLike[str]

_PROBABILITY_OBJECTIVES: Final = {"binary", "cross_entropy", "xentropy"}
_CLASS_PROBABILITY_OBJECTIVES: Final = {
    "multiclass",
    "softmax",
    "multiclassova",
    "multiclass_ova",
    "ova",
    "ovr",
}
_RANKING_OBJECTIVES: Final = {
    "lambdarank",
    "rank_xendcg",
    "xendcg",
    "xe_ndcg",
    "xe_ndcg_mart",
    "xendcg_mart",
}


class ParityError(AssertionError):
    """Compiled predictions differ from LightGBM's by more than the tolerance."""

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

# Anonymous memory files holding loaded libraries. They stay open for the life of the
# process: the dynamic loader caches libraries by path name, and a closed descriptor's
# number (hence "/proc/self/fd/N") would be reused by the next load.
_LOADED_FDS: list[int] = []
_LOAD_LOCK = threading.Lock()


def _dlopen_bytes(data: bytes, digest: str, suffix: str) -> ctypes.CDLL:
    """Load a shared library from exactly ``data`` (already verified)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create(f"looper-model-{digest[:16]}", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
        except OSError:
            os.close(fd)
            log.debug("loading from an anonymous memory file failed; using a private copy")
        else:
            with _LOAD_LOCK:
                _LOADED_FDS.append(fd)
            return lib
    # Elsewhere: a private copy with a unique name, removed once mapped.
    tmpdir = tempfile.mkdtemp(prefix="looper-model-")
    try:
        path = os.path.join(tmpdir, f"{digest[:16]}{suffix}")
        with open(path, "wb") as f:
            f.write(data)
        return ctypes.CDLL(path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _read_verified(folder: Path, entry: Mapping[str, Any], what: str) -> bytes:
    path = folder / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{what} {path} named by the manifest is missing") from None
    digest = sha256_bytes(data)
    if digest != entry["sha256"]:
        raise IntegrityError(
            f"refusing to load {path}: its SHA-256 is {digest} but the manifest records "
            f"{entry['sha256']}; the file was modified or corrupted after it was built"
        )
    return data


def _as_row(x: Any, num_feature: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.shape[0] != num_feature:
        raise ValueError(f"expected {num_feature} feature values, got {arr.shape[0]}")
    return arr


class _Native:
    """Calls into the compiled library; one instance per loaded library."""

    def __init__(
        self, lib: ctypes.CDLL, num_feature: int, num_output: int, branch_free: bool = True
    ) -> None:
        for name in SHIM_SYMBOLS:
            if not hasattr(lib, name):
                raise ArtifactError(f"library lacks the entry point {name!r}")
        for name in ("looper_abi_version", "looper_num_feature", "looper_num_output"):
            getattr(lib, name).restype = ctypes.c_int32
            getattr(lib, name).argtypes = []
        abi = lib.looper_abi_version()
        if abi != ABI_VERSION:
            raise ArtifactError(f"library ABI {abi}, this loader speaks {ABI_VERSION}")
        if lib.looper_num_feature() != num_feature or lib.looper_num_output() != num_output:
            raise ArtifactError(
                f"library reports {lib.looper_num_feature()} features / "
                f"{lib.looper_num_output()} outputs; manifest says {num_feature} / {num_output}"
            )
        self.lib = lib
        self.num_feature = num_feature
        self.num_output = num_output

        def address(name: str) -> int:
            value = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
            assert value is not None
            return value

        # Single-row calls keep the GIL (PYFUNCTYPE): a ~1 µs call is cheaper than
        # releasing and re-taking it. Batch calls release it so threads run in parallel.
        # Declaring the exact ctypes array types as argument types is the cheapest
        # conversion ctypes offers (an identity check, no pointer object).
        vp = ctypes.c_void_p
        self.in_type = ctypes.c_double * num_feature
        self.out_type = ctypes.c_double * num_output
        # The branch-free walk (when the library has it: one-output models)
        # serves single rows, batches and varied rows; TL2cgen's walk otherwise.
        self.branch_free = (
            branch_free
            and num_output == 1
            and all(hasattr(lib, name) for name in BRANCH_FREE_SYMBOLS)
        )
        prefix = "looper_bf_" if self.branch_free else "looper_"
        self.one_address = address(prefix + "predict_one")
        self.one = ctypes.PYFUNCTYPE(ctypes.c_double, self.in_type)(self.one_address)
        self.row = ctypes.PYFUNCTYPE(None, self.in_type, self.out_type)(
            address("looper_predict_row")
        )
        self.dense = ctypes.CFUNCTYPE(None, vp, ctypes.c_int64, ctypes.c_int32, vp)(
            address(prefix + "predict_dense")
        )
        self.varying_address = (
            address(prefix + "predict_varying")
            if hasattr(lib, prefix + "predict_varying")
            else None
        )
        self.local = threading.local()

    def make_predict_one(self) -> Callable[[Any], float | np.ndarray]:
        """The per-row function: fill this thread's input buffer, call the library.

        Each thread gets its own ctypes input/output arrays (and numpy views of them) on
        first use, so concurrent callers never share a buffer and the hot path allocates
        nothing but the result.
        """
        local = self.local
        nf = self.num_feature
        one, row = self.one, self.row
        # A list of floats goes in through struct (about 2x faster than ctypes' slice
        # assignment); None, strings or a wrong length raise and take the slow path.
        pack = struct.Struct(f"={nf}d").pack_into
        bad_row = (struct.error, TypeError, ValueError)
        in_type, out_type = self.in_type, self.out_type
        ndarray = np.ndarray
        as_array = np.ctypeslib.as_array

        def buffers() -> tuple[Any, np.ndarray, Any, np.ndarray]:
            buf, out = in_type(), out_type()
            local.buffers = bufs = (buf, as_array(buf), out, as_array(out))
            return bufs

        def fill(buf: Any, view: np.ndarray, x: Any) -> None:
            if type(x) is ndarray:
                if x.size != nf:
                    raise ValueError(f"expected {nf} feature values, got {x.size}")
                try:
                    view[...] = x
                except ValueError:
                    view[...] = x.reshape(-1)
            else:
                try:
                    pack(buf, 0, *x)  # list/tuple of floats
                except bad_row:
                    view[...] = _as_row(x, nf)  # None → NaN, other sequences, size errors

        if self.num_output == 1:

            def predict_one(x: Any) -> float:
                try:
                    buf, view, _, _ = local.buffers
                except AttributeError:
                    buf, view, _, _ = buffers()
                if type(x) is list:
                    try:
                        pack(buf, 0, *x)
                    except bad_row:
                        fill(buf, view, x)
                elif type(x) is ndarray and x.ndim == 1 and x.size == nf:
                    view[...] = x
                else:
                    fill(buf, view, x)
                return one(buf)  # type: ignore[no-any-return]

            if _rowcall is not None:  # lists and tuples of numbers without ctypes
                return _rowcall.RowCall(  # type: ignore[no-any-return]
                    self.one_address, nf, predict_one, self, array_type=np.ndarray
                )
            return predict_one

        def predict_one_multi(x: Any) -> np.ndarray:
            try:
                buf, view, out, out_view = local.buffers
            except AttributeError:
                buf, view, out, out_view = buffers()
            fill(buf, view, x)
            row(buf, out)
            return out_view.copy()

        return predict_one_multi

    def make_row_scorer(
        self, column: int, values: Sequence[float]
    ) -> Callable[[Sequence[float]], list[float]]:
        """``score(x)``: the first output for ``x`` with column ``column`` set to each of
        ``values`` in turn, in one library call (per-thread buffers, as predict_one)."""
        n, nf = len(values), self.num_feature
        if self.varying_address is None or self.num_output != 1:
            return _row_scorer_by_rows(self.make_predict_one(), column, values)
        vals_type = ctypes.c_double * n
        out_type = ctypes.c_double * n
        vals = vals_type(*values)
        call = ctypes.PYFUNCTYPE(
            None, self.in_type, ctypes.c_int32, vals_type, ctypes.c_int32, out_type
        )(self.varying_address)
        pack = struct.Struct(f"={nf}d").pack_into
        bad_row = (struct.error, TypeError, ValueError)
        in_type = self.in_type
        as_array = np.ctypeslib.as_array
        local = threading.local()

        def score(x: Sequence[float]) -> list[float]:
            try:
                buf, out = local.buffers
            except AttributeError:
                buf, out = local.buffers = (in_type(), out_type())
            try:
                pack(buf, 0, *x)
            except bad_row:
                as_array(buf)[...] = _as_row(x, nf)  # None → NaN, arrays, size errors
            call(buf, column, vals, n, out)
            return out[:]

        if _rowcall is not None:  # lists and tuples of numbers without ctypes
            return _rowcall.RowCall(  # type: ignore[no-any-return]
                self.varying_address, nf, score, self, column=column, values=list(values),
                array_type=np.ndarray,
            )
        return score

    def predict(self, X: np.ndarray, raw_score: bool, num_threads: int) -> np.ndarray:
        n = X.shape[0]
        out = np.empty((n, self.num_output), dtype=np.float64)
        if n == 0:
            return out
        xp, op = X.ctypes.data, out.ctypes.data
        margin = 1 if raw_score else 0
        threads = max(1, min(num_threads, n // _MIN_ROWS_PER_THREAD))
        if threads == 1:
            self.dense(xp, n, margin, op)
            return out
        bounds = [n * i // threads for i in range(threads + 1)]
        xstride, ostride = 8 * self.num_feature, 8 * self.num_output
        workers = [
            threading.Thread(
                target=self.dense,
                args=(xp + lo * xstride, hi - lo, margin, op + lo * ostride),
                daemon=True,
            )
            for lo, hi in itertools.pairwise(bounds[1:])
        ]
        for w in workers:
            w.start()
        self.dense(xp, bounds[1], margin, op)
        for w in workers:
            w.join()
        return out


def _row_scorer_by_rows(
    predict_one: Callable[[Any], Any], column: int, values: Sequence[float]
) -> Callable[[Sequence[float]], list[float]]:
    """``make_row_scorer`` with one ``predict_one`` call per value."""
    values = [float(v) for v in values]

    def score(x: Sequence[float]) -> list[float]:
        row = list(x)
        out = []
        for v in values:
            row[column] = v
            out.append(float(np.asarray(predict_one(row)).reshape(-1)[0]))
        return out

    return score


class _Gtil:
    """Treelite's GTIL on the artifact's Treelite checkpoint (no compiler needed)."""

    def __init__(self, model_bytes: bytes, num_feature: int, num_output: int) -> None:
        import treelite  # only on this fallback path
        import treelite.gtil

        self.model = treelite.Model.deserialize_bytes(model_bytes)
        self._gtil = treelite.gtil
        self.num_feature = num_feature
        self.num_output = num_output

    def make_predict_one(self) -> Callable[[Any], float | np.ndarray]:
        nf = self.num_feature

        def predict_one(x: Any) -> float | np.ndarray:
            row = _as_row(x, nf).reshape(1, nf)
            out = self.predict(row, False, 1)[0]
            return float(out[0]) if self.num_output == 1 else out

        return predict_one

    def predict(self, X: np.ndarray, raw_score: bool, num_threads: int) -> np.ndarray:
        if X.shape[0] == 0:
            return np.empty((0, self.num_output), dtype=np.float64)
        out = self._gtil.predict(self.model, X, nthread=num_threads, pred_margin=raw_score)
        return np.asarray(out, dtype=np.float64).reshape(X.shape[0], self.num_output)


class CompiledModel:
    """A loaded compiled-model artifact. Thread-safe; create with :meth:`load`."""

    def __init__(self, folder: Path, manifest: dict[str, Any], impl: _Native | _Gtil) -> None:
        self.path = folder
        self.manifest = manifest
        self.backend: Backend = "native" if isinstance(impl, _Native) else "gtil"
        self.num_feature: int = manifest["num_feature"]
        self.num_class: int = manifest["num_class"]
        self.feature_names: list[str] = list(manifest["feature_names"])
        self.task: str = manifest["task"]
        # which tree walk serves: "branch_free", "tl2cgen" (native) or "gtil"
        self.tree_walk: str = (
            ("branch_free" if impl.branch_free else "tl2cgen")
            if isinstance(impl, _Native)
            else "gtil"
        )
        self._impl = impl
        # The per-row function is a closure installed on the instance: one Python call
        # fewer on the hot path than a method that delegates.
        self.predict_one = impl.make_predict_one()  # type: ignore[method-assign]

    def row_scorer(
        self, column: int, values: Sequence[float]
    ) -> Callable[[Sequence[float]], list[float]]:
        """A function ``score(x) -> list[float]``: the prediction (first output) for the
        row ``x`` (``num_feature`` values) with feature ``column`` set to each of
        ``values`` in turn; e.g. one row scored under each of K actions. One library call
        per row on the native backend; identical to ``predict_one`` on each varied row."""
        if not 0 <= column < self.num_feature:
            raise ValueError(f"column must be in [0, {self.num_feature}), got {column}")
        if isinstance(self._impl, _Native):
            return self._impl.make_row_scorer(column, values)
        return _row_scorer_by_rows(self.predict_one, column, values)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: Backend | None = None,
        expected_manifest_sha256: str | None = None,
        branch_free: bool = True,
    ) -> CompiledModel:
        """Load the artifact at ``path`` (its folder or its ``manifest.json``).

        Verifies the manifest checksum (and ``expected_manifest_sha256`` when given), then
        the SHA-256 of the library before it is loaded; raises :class:`IntegrityError` on
        any mismatch and :class:`ArtifactError` for a missing or malformed artifact.
        ``backend="gtil"`` forces the Treelite interpreter even for a native artifact.
        ``branch_free=False`` uses TL2cgen's walk even where the library also has the
        branch-free one (``tree_walk`` says which serves).
        """
        folder, manifest = read_manifest(path, expected_sha256=expected_manifest_sha256)
        chosen = backend or manifest["backend"]
        nf, nout = manifest["num_feature"], manifest["num_class"]
        impl: _Native | _Gtil
        if chosen == "native":
            if manifest["library"] is None:
                raise ArtifactError(f"{folder}: artifact has no native library")
            entry = manifest["library"]
            data = _read_verified(folder, entry, "library")
            lib = _dlopen_bytes(data, entry["sha256"], Path(entry["file"]).suffix)
            impl = _Native(lib, nf, nout, branch_free=branch_free)
        elif chosen == "gtil":
            data = _read_verified(folder, manifest["treelite_model"], "Treelite model")
            impl = _Gtil(data, nf, nout)
        else:
            raise ValueError(f"unknown backend {chosen!r}")
        return cls(folder, manifest, impl)

    def predict_one(self, x: Sequence[float] | np.ndarray) -> float | np.ndarray:
        """One row → float (binary: probability, regression: value) or (K,) probabilities.

        ``x`` is a list/tuple/array of ``num_feature`` floats in ``feature_names`` order;
        NaN (or None in a list) is missing. Lists and 1-D float64 arrays take the fast
        path. (Each instance replaces this method with its backend's closure.)
        """
        return self._impl.make_predict_one()(x)  # pragma: no cover

    def predict(
        self, X: Any, *, raw_score: bool = False, num_threads: int | None = None
    ) -> np.ndarray:
        """Batch prediction: ``(n,)`` for one output, ``(n, K)`` for multiclass.

        ``X`` is ``(n, num_feature)`` floats (a DataFrame is reordered to
        ``feature_names`` by column name). ``raw_score`` returns margins (no sigmoid or
        softmax). ``num_threads`` defaults to the number of CPUs; small batches run on the
        calling thread.
        """
        columns = getattr(X, "columns", None)
        if columns is not None and set(self.feature_names) <= set(columns):
            X = X[self.feature_names]
        arr = np.ascontiguousarray(X, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.num_feature:
            raise ValueError(f"expected shape (n, {self.num_feature}), got {np.shape(X)}")
        threads = num_threads if num_threads and num_threads > 0 else (os.cpu_count() or 1)
        out = self._impl.predict(arr, raw_score, threads)
        return out.reshape(-1) if self.num_class == 1 else out

    def __repr__(self) -> str:
        meta = self.manifest.get("metadata") or {}
        version = meta.get("model_version")
        tag = f", model_version={version!r}" if version is not None else ""
        return (
            f"CompiledModel({str(self.path)!r}, backend={self.backend!r}, "
            f"tree_walk={self.tree_walk!r}, task={self.task!r}, "
            f"num_feature={self.num_feature}, num_class={self.num_class}{tag})"
        )


# --------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------


def check_parity(
    compiled: CompiledModel,
    booster: ModelLike,
    X: Any,
    atol: float = 1e-6,
    *,
    one_row_sample: int = 256,
) -> float:
    """Max abs difference between ``compiled`` and ``booster.predict`` on ``X``.

    Compares batch :meth:`CompiledModel.predict` on every row and
    ``predict_one`` on the first ``one_row_sample`` rows; raises :class:`ParityError`
    when the difference exceeds ``atol`` (NaN on one side only counts as infinite).
    """
    bst = _as_booster(booster)
    arr = np.ascontiguousarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    expected = np.asarray(bst.predict(arr), dtype=np.float64)
    got = compiled.predict(arr)
    worst = _max_abs_diff(got, expected)
    m = min(one_row_sample, arr.shape[0])
    if m:
        singles = np.array([compiled.predict_one(arr[i]) for i in range(m)], dtype=np.float64)
        worst = max(worst, _max_abs_diff(singles, expected[:m]))
    if not worst <= atol:
        raise ParityError(
            f"compiled model ({compiled.backend}) differs from LightGBM by {worst:.3g} "
            f"(> atol {atol:g}) on {arr.shape[0]} rows",
            worst,
        )
    return worst


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ParityError(f"prediction shapes differ: {a.shape} vs {b.shape}", math.inf)
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max())


# --------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------


def _as_booster(model: ModelLike) -> lightgbm.Booster:
    import lightgbm as lgb

    if isinstance(model, lgb.Booster):
        return model
    if isinstance(model, lgb.LGBMModel):
        return model.booster_
    if isinstance(model, str | os.PathLike):
        return lgb.Booster(model_file=os.fspath(model))
    raise TypeError(
        "model must be a lightgbm.Booster, a fitted LGBMModel or the path of a LightGBM "
        f"text model, not {type(model).__name__}"
    )


def _describe(model_str: str) -> dict[str, Any]:
    """Facts about a LightGBM text model that the manifest records."""
    header = lightgbm_text.header(model_str)
    names = header.get("feature_names", "").split()
    infos = header.get("feature_infos", "").split()
    num_feature = int(header.get("max_feature_idx", len(names) - 1)) + 1
    objective = header.get("objective", "custom")
    family = objective.split()[0] if objective else "custom"
    num_class = int(header.get("num_class", "1"))
    if family in _PROBABILITY_OBJECTIVES:
        task, output = "binary", "probability"
    elif family in _CLASS_PROBABILITY_OBJECTIVES:
        task, output = "multiclass", "class_probabilities"
    elif family in _RANKING_OBJECTIVES:
        task, output = "ranking", "score"
    else:
        task, output = "regression", "value"
    categorical = [
        names[i]
        for i, info in enumerate(infos)
        if i < len(names) and info != "none" and not info.startswith("[")
    ]
    leaves = [int(v) for v in re.findall(r"^num_leaves=(\d+)$", model_str, flags=re.M)]
    return {
        "feature_names": names,
        "num_feature": num_feature,
        "num_class": num_class,
        "objective": objective,
        "objective_family": family,
        "task": task,
        "output": output,
        "categorical_features": categorical,
        "num_trees": len(leaves),
        "num_leaves_total": sum(leaves),
        "num_tree_per_iteration": int(header.get("num_tree_per_iteration", "1")),
    }


def _resolve_feature_names(model_names: list[str], given: Sequence[str] | None) -> list[str]:
    if given is None:
        return list(model_names)
    names = [str(n) for n in given]
    if len(names) != len(model_names):
        raise ValueError(f"feature_names has {len(names)} names; the model has {len(model_names)}")
    if len(set(names)) != len(names):
        raise ValueError("feature_names contains duplicates")
    default = [f"Column_{i}" for i in range(len(model_names))]
    if model_names != default and model_names != names:
        raise ValueError(
            "feature_names differ from the names the model was trained with: "
            f"{names} vs {model_names}; the order must be the model's input order"
        )
    return names


def _auto_parallel_comp(num_trees: int, total_leaves: int) -> int:
    """About 300 leaves per unit; at least 2 (the blocked batch path needs units)."""
    units = max(2, math.ceil(total_leaves / _LEAVES_PER_UNIT))
    return max(1, min(num_trees, 512, units))


def _compiler_version(toolchain: str) -> str:
    try:
        out = subprocess.run(
            [toolchain, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return toolchain
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.strip() or toolchain


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lib_suffix() -> str:
    if sys.platform == "darwin":
        return ".dylib"
    if sys.platform in ("win32", "cygwin"):
        return ".dll"
    return ".so"


# TL2cgen's bundled Treelite reads models that the newer Python Treelite wrote, and says so
# on the process's stderr for every model; read correctly (the parity check proves it), so
# those lines go to the debug log, anything else to the warning log.
_KNOWN_NATIVE_NOISE = ("originated from a newer Treelite version", "Currently running Treelite version",
                       "The model checkpoint was generated from Treelite version")


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 meanwhile to ``log``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read(1 << 16).decode("utf-8", "replace").splitlines():
                if line.strip():
                    noise = any(k in line for k in _KNOWN_NATIVE_NOISE)
                    log.log(logging.DEBUG if noise else logging.WARNING, "tl2cgen: %s", line.strip())


def _build_native(
    tl_model: Any,
    workdir: Path,
    dest: Path,
    *,
    model_str: str,
    num_feature: int,
    num_output: int,
    parallel_comp: int,
    toolchain: str,
    options: list[str],
) -> dict[str, int]:
    """Generate C with TL2cgen, add the shim, compile into ``dest``; return layout facts."""
    import json

    import tl2cgen

    src = workdir / "src"
    with _native_stderr_to_log():
        tl2cgen.generate_c_code(tl_model, dirpath=src, params={"parallel_comp": parallel_comp})
    header = (src / "header.h").read_text()
    if "double fvalue;" not in header or "double* result" not in header:
        raise RuntimeError("generated code does not use float64 inputs and outputs")
    n_target = re.search(r"#define N_TARGET (\d+)", header)
    n_class = re.search(r"#define MAX_N_CLASS (\d+)", header)
    if n_target is None or n_class is None:
        raise RuntimeError("generated header lacks N_TARGET/MAX_N_CLASS")
    if int(n_target.group(1)) * int(n_class.group(1)) != num_output:
        raise RuntimeError(
            f"generated code has {n_target.group(1)}x{n_class.group(1)} outputs; "
            f"expected {num_output}"
        )
    sources = []
    for path in sorted(src.glob("*.c")):
        text = rewrite_tree_code(path.read_text())
        path.write_text(text)
        sources.append(text)
    reads_missing = reads_missing_word(sources)
    layout = parse_predict((src / "main.c").read_text())
    (src / "looper_shim.c").write_text(
        shim_source(num_feature, num_output, layout, reads_missing_word=reads_missing)
    )
    recipe_path = src / "recipe.json"
    recipe = json.loads(recipe_path.read_text())
    recipe["sources"].append({"name": "looper_shim", "length": 1})
    branch_free = 0
    try:
        (src / "looper_branch_free.c").write_text(branch_free_source(model_str))
        branch_free = 1
    except Unsupported as e:
        log.info("no branch-free tree walk for this model (%s): TL2cgen's walk serves it", e)
    except Exception as e:  # an optional part must not cost the native build
        log.warning(
            "branch-free tree walk not generated (%s: %s); TL2cgen's walk serves",
            type(e).__name__,
            e,
        )

    def build(with_branch_free: bool) -> str:
        sources = [*recipe["sources"]]
        if with_branch_free:
            sources.append({"name": "looper_branch_free", "length": 1})
        recipe_path.write_text(json.dumps({**recipe, "sources": sources}))
        return str(
            tl2cgen.create_shared(
                toolchain,
                src,
                nthread=os.cpu_count() or 1,
                options=options,
                long_build_time_warning=False,
            )
        )

    try:
        built = build(bool(branch_free))
    except Exception as e:
        if not branch_free:
            raise
        log.warning("building with the branch-free walk failed (%s); building without it", e)
        branch_free = 0
        built = build(False)
    shutil.copyfile(built, dest)
    return {
        "translation_units": layout.num_units if layout else 1,
        "batch_block_rows": block_rows(num_feature, direct=not reads_missing) if layout else 1,
        "rows_uncopied": int(not reads_missing),
        "branch_free": branch_free,
    }


def compile_lightgbm(
    model: ModelLike,
    out_dir: str | os.PathLike[str],
    *,
    feature_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    parallel_comp: int | None = None,
    backend: Literal["auto", "native", "gtil"] = "auto",
    toolchain: str = DEFAULT_TOOLCHAIN,
    compiler_options: Sequence[str] | None = None,
    verify_rows: int = 256,
) -> Path:
    """Compile a LightGBM model into the artifact folder ``out_dir``; return its manifest path.

    ``model``: a ``lightgbm.Booster``, a fitted ``LGBMModel`` or the path of a LightGBM
    text model (its best iteration when it has one, as ``Booster.predict`` uses).
    ``feature_names``: the model's input order, recorded in the manifest (must match the
    names the model was trained with, unless it has LightGBM's default ``Column_i``).
    ``metadata``: JSON-serialisable caller facts (model, blueprint, policy versions...).
    ``parallel_comp``: number of C translation units (default: about 300 leaves each).
    ``backend``: ``"auto"`` compiles when ``toolchain`` is found and falls back to GTIL
    (with a warning) when it is missing or compilation fails; ``"native"`` raises
    instead; ``"gtil"`` skips compilation. ``compiler_options`` are appended to
    TL2cgen's compiler command (default ``-O1 -Wl,-Bsymbolic``). Before the artifact is published, its
    predictions on ``verify_rows`` synthetic rows (with NaNs and unseen categories) are
    compared with ``Booster.predict`` (0 disables); a mismatch raises :class:`ParityError`
    and nothing is published.
    """
    import lightgbm as lgb
    import treelite

    started = time.perf_counter()
    booster = _as_booster(model)
    model_str = booster.model_to_string()
    facts = _describe(model_str)
    names = _resolve_feature_names(facts["feature_names"], feature_names)
    if facts["num_feature"] != len(names):
        raise ValueError("the model's feature count and its feature names disagree")
    meta = dict(metadata or {})
    try:
        canonical_json(meta)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable (no NaN): {e}") from None

    final = Path(out_dir).expanduser().absolute()
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(
            f"{final} exists and is not empty; publish each model version into a new folder"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="looper-compile-") as work:
            workdir = Path(work)
            text_path = workdir / "model.txt"
            # Treelite's loader, too, would take feature-importance lines for tree fields
            text_path.write_text(lightgbm_text.trees_text(model_str))
            tl_model = treelite.frontend.load_lightgbm_model(text_path)
            tl_model.serialize(staging / TREELITE_NAME)

            n_trees = max(1, facts["num_trees"])
            pc = parallel_comp or _auto_parallel_comp(n_trees, facts["num_leaves_total"])
            pc = max(1, min(int(pc), n_trees))
            options = list(
                DEFAULT_COMPILER_OPTIONS if compiler_options is None else compiler_options
            )
            lib_name = LIBRARY_STEM + _lib_suffix()
            chosen: Backend = "gtil"
            build_error: str | None = None
            build_facts: dict[str, int] = {}
            if backend != "gtil":
                if shutil.which(toolchain) is None:
                    build_error = f"C compiler {toolchain!r} not found"
                else:
                    try:
                        build_facts = _build_native(
                            tl_model,
                            workdir,
                            staging / lib_name,
                            model_str=model_str,
                            num_feature=facts["num_feature"],
                            num_output=facts["num_class"],
                            parallel_comp=pc,
                            toolchain=toolchain,
                            options=options,
                        )
                        chosen = "native"
                    except Exception as e:
                        build_error = f"compilation failed: {type(e).__name__}: {e}"
                if build_error is not None:
                    if backend == "native":
                        raise RuntimeError(build_error)
                    log.warning(
                        "serving artifact %s falls back to Treelite GTIL (slower per call): %s",
                        final,
                        build_error,
                    )

        manifest = _manifest(
            staging,
            facts=facts,
            names=names,
            backend=chosen,
            lib_name=lib_name if chosen == "native" else None,
            build_facts=build_facts,
            toolchain=toolchain,
            options=options,
            parallel_comp=pc if chosen == "native" else None,
            build_error=build_error,
            metadata=meta,
            versions={
                "lightgbm": lgb.__version__,
                "treelite": treelite.__version__,
                "tl2cgen": _version_of("tl2cgen"),
                "numpy": np.__version__,
            },
            started=started,
        )
        write_manifest(staging, manifest)
        if verify_rows > 0:
            probe = CompiledModel.load(staging)
            check_parity(probe, booster, _synthetic_rows(model_str, facts, verify_rows))
        for child in staging.iterdir():
            _fsync_path(child)
        os.chmod(staging, 0o755)
        os.rename(staging, final)  # atomic; replaces an empty folder on POSIX
        _fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / MANIFEST_NAME


def _version_of(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", None))


def _manifest(
    staging: Path,
    *,
    facts: Mapping[str, Any],
    names: list[str],
    backend: Backend,
    lib_name: str | None,
    build_facts: Mapping[str, int],
    toolchain: str,
    options: list[str],
    parallel_comp: int | None,
    build_error: str | None,
    metadata: dict[str, Any],
    versions: dict[str, str | None],
    started: float,
) -> dict[str, Any]:
    library: dict[str, Any] | None = None
    if lib_name is not None:
        lib_path = staging / lib_name
        library = {
            "file": lib_name,
            "sha256": sha256_file(lib_path),
            "size": lib_path.stat().st_size,
            "abi_version": ABI_VERSION,
            "entry_points": [
                *SHIM_SYMBOLS,
                *OPTIONAL_SYMBOLS,
                *(BRANCH_FREE_SYMBOLS if build_facts.get("branch_free") else ()),
            ],
            **build_facts,
        }
    tl_path = staging / TREELITE_NAME
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backend": backend,
        "feature_names": names,
        "num_feature": facts["num_feature"],
        "num_class": facts["num_class"],
        "task": facts["task"],
        "objective": facts["objective"],
        "output": facts["output"],
        "num_trees": facts["num_trees"],
        "categorical_features": list(facts["categorical_features"]),
        "missing_value": "NaN",
        "library": library,
        "treelite_model": {
            "file": TREELITE_NAME,
            "sha256": sha256_file(tl_path),
            "size": tl_path.stat().st_size,
        },
        "versions": versions,
        "build": {
            "compiler": _compiler_version(toolchain) if backend == "native" else None,
            "compiler_options": options if backend == "native" else None,
            "parallel_comp": parallel_comp,
            "fallback_reason": build_error,
            "platform": platform.platform(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 3),
        },
        "metadata": metadata,
    }


def _synthetic_rows(model_str: str, facts: Mapping[str, Any], n: int) -> np.ndarray:
    """Rows spanning each feature's training range, with NaNs and unseen categories."""
    header = lightgbm_text.header(model_str)
    infos = header.get("feature_infos", "").split()
    nf = facts["num_feature"]
    rng = np.random.default_rng(20221)
    X = np.empty((n, nf), dtype=np.float64)
    for j in range(nf):
        info = infos[j] if j < len(infos) else "none"
        if info.startswith("["):
            lo_s, _, hi_s = info[1:-1].partition(":")
            lo, hi = float(lo_s), float(hi_s)
            span = (hi - lo) or 1.0
            X[:, j] = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=n)
        elif info != "none":
            seen = [int(c) for c in info.split(":")]
            X[:, j] = rng.choice(np.array([*seen, max(seen) + 1, -1], dtype=np.float64), size=n)
        else:
            X[:, j] = rng.normal(size=n)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X
