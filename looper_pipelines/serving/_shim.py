"""C source of the dense-input entry points compiled into every native model library.

TL2cgen generates ``predict(union Entry* data, int pred_margin, double* result)``, where
``union Entry { int missing; double fvalue; int qvalue; }`` marks a missing value with
``missing == -1``, ``result`` must be zeroed by the caller and the objective's
post-processing (sigmoid, softmax, exp, ...) is applied inside ``predict`` unless
``pred_margin`` is set. The shim adds entry points that take a plain row-major ``double``
matrix, so the caller needs no Entry marshalling and no per-call allocation:

- ``looper_predict_one(const double* x) -> double``: first output of one row.
- ``looper_predict_row(const double* x, double* out)``: all outputs of one row.
- ``looper_predict_dense(const double* x, int64_t n, int32_t pred_margin, double* out)``:
  ``n`` rows; ``out`` gets ``n * num_output`` values (row-major).
- ``looper_predict_varying(const double* x, int32_t col, const double* values, int32_t n,
  double* out)``: ``n`` rows equal to ``x`` except that column ``col`` takes each of
  ``values`` (one row scored under each of several actions); ``out`` as above. Optional:
  libraries built before it was added lack it, and the loader then calls
  ``looper_predict_row`` per value.
- ``looper_abi_version()``, ``looper_num_feature()``, ``looper_num_output()``,
  ``looper_batch_block_rows()``.

Before compilation, :func:`rewrite_tree_code` rewrites TL2cgen's numerical split tests so
that NaN itself means missing: ``!(missing) || v <= t`` (missing goes left) becomes
``!(v > t)`` and ``missing == 0 && v <= t`` (missing goes right) becomes ``v <= t``, which
IEEE comparisons make exact (any comparison with NaN is false, and ``!(v > t)`` equals
``v <= t`` for every other double). That halves the branches per node and lets -O1/-O2
compile the trees without duplicating paths per missing-value pattern. Sibling leaves
become a two-entry table indexed by the last test (``result += lp[cond]``: no branch,
same addend). Tree structure, thresholds, leaf values and summation order are TL2cgen's.

Batches run *blocked* when TL2cgen split the trees into several translation units
(``parallel_comp`` ≥ 2): each unit (a group of trees) runs over a block of rows before
the next unit starts, which keeps its code and branch-predictor state warm and is about
twice as fast per row as walking every tree for one row after another. The arithmetic
per row and its order are those of ``predict``, so results are bit-identical.

NaN means missing. When no generated code reads the ``missing`` word any more (every
split was rewritten: numerical models), the rows are passed to the trees as they are,
with no copy: blocks are then large (:data:`DIRECT_BLOCK_ROWS`), since longer runs of one
unit measured faster. Otherwise (categorical splits still test ``missing``) rows are
copied into Entry arrays: NaN becomes a quiet NaN whose low 32 bits are all ones, which
reads as missing to both kinds of test; since ``missing`` overlaps the low 32 bits of
``fvalue`` (little-endian), a finite double whose low 32 bits are all ones would also read
as missing, so the shim moves such a value one ulp towards zero, which changes no
decision unless a split threshold equals that neighbouring double exactly.

The Entry arrays live on the C stack or in a per-call allocation (or are the caller's
read-only rows), so concurrent callers share nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

ABI_VERSION: Final = 1
# Rows per batch block when rows are passed to the trees uncopied (see block_rows).
DIRECT_BLOCK_ROWS: Final = 65536

# Entry points a library may lack (added after ABI 1 was fixed; the loader falls back).
OPTIONAL_SYMBOLS: Final = ("looper_predict_varying",)

SHIM_SYMBOLS: Final = (
    "looper_abi_version",
    "looper_num_feature",
    "looper_num_output",
    "looper_predict_one",
    "looper_predict_row",
    "looper_predict_dense",
    "looper_batch_block_rows",
)

_TEMPLATE: Final = r"""/* Looper dense-input entry points (ABI __ABI__); generated, do not edit. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "header.h"

#define LOOPER_NUM_FEATURE __NUM_FEATURE__
#define LOOPER_NUM_OUTPUT __NUM_OUTPUT__
#define LOOPER_NUM_UNITS __NUM_UNITS__
#define LOOPER_BLOCK_ROWS __BLOCK_ROWS__
/* 1 when some generated code still tests union Entry's missing word (categorical splits,
   tests not rewritten): rows are then copied into Entry arrays by looper_fill. */
#define LOOPER_READS_MISSING_WORD __READS_MISSING__

/* Missing: a quiet NaN whose low 32 bits are all ones (missing == -1 as well). */
static const union { uint64_t u; double d; } looper_missing = { 0x7FF80000FFFFFFFFull };

int32_t looper_abi_version(void) { return __ABI__; }
int32_t looper_num_feature(void) { return LOOPER_NUM_FEATURE; }
int32_t looper_num_output(void) { return LOOPER_NUM_OUTPUT; }
int32_t looper_batch_block_rows(void) { return LOOPER_NUM_UNITS > 0 ? LOOPER_BLOCK_ROWS : 1; }

static inline void looper_fill(union Entry* e, const double* x) {
  for (int j = 0; j < LOOPER_NUM_FEATURE; ++j) {
    const double v = x[j];
    if (isnan(v)) {
      e[j].fvalue = looper_missing.d;
    } else {
      e[j].fvalue = v;
      if (e[j].missing == -1) {
        e[j].fvalue = nextafter(v, 0.0);
      }
    }
  }
}

#if LOOPER_READS_MISSING_WORD
#define LOOPER_ENTRIES(e, x) union Entry e[LOOPER_NUM_FEATURE]; looper_fill(e, x)
#else
/* The trees only compare fvalue (NaN compares false by itself) and never write data. */
#define LOOPER_ENTRIES(e, x) union Entry* e = (union Entry*)(x)
#endif

double looper_predict_one(const double* x) {
  double r[LOOPER_NUM_OUTPUT];
  for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) r[k] = 0.0;
  LOOPER_ENTRIES(e, x);
  predict(e, 0, r);
  return r[0];
}

void looper_predict_row(const double* x, double* out) {
  for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) out[k] = 0.0;
  LOOPER_ENTRIES(e, x);
  predict(e, 0, out);
}

void looper_predict_varying(const double* x, int32_t col, const double* values, int32_t n,
                            double* out) {
  double row[LOOPER_NUM_FEATURE];
  for (int j = 0; j < LOOPER_NUM_FEATURE; ++j) row[j] = x[j];
  for (int32_t i = 0; i < n; ++i) {
    row[col] = values[i];
    looper_predict_row(row, out + (int64_t)i * LOOPER_NUM_OUTPUT);
  }
}

#if LOOPER_NUM_UNITS > 0
/* predict() is exactly: the units in order, then the base scores, then (unless
   pred_margin) postprocess(). Running each unit over a block of rows before the next
   keeps that unit's code and branch history hot; the per-row arithmetic and its order
   are unchanged, so results are bit-identical to predict(). */
typedef void (*looper_unit_fn)(union Entry*, double*);
static const looper_unit_fn looper_units[LOOPER_NUM_UNITS] = { __UNITS__ };

static inline void looper_base_scores(double* result) {
__BASE_SCORES__
}

static int looper_predict_blocked(const double* x, int64_t n, int32_t pred_margin, double* out) {
#if LOOPER_READS_MISSING_WORD
  union Entry* e = (union Entry*)malloc(sizeof(union Entry) * LOOPER_BLOCK_ROWS * LOOPER_NUM_FEATURE);
  if (e == NULL) return 0;
#endif
  for (int64_t i0 = 0; i0 < n; i0 += LOOPER_BLOCK_ROWS) {
    const int m = (n - i0 < LOOPER_BLOCK_ROWS) ? (int)(n - i0) : LOOPER_BLOCK_ROWS;
    double* o = out + i0 * LOOPER_NUM_OUTPUT;
#if LOOPER_READS_MISSING_WORD
    for (int r = 0; r < m; ++r) {
      looper_fill(e + r * LOOPER_NUM_FEATURE, x + (i0 + r) * LOOPER_NUM_FEATURE);
    }
#else
    union Entry* e = (union Entry*)(x + i0 * LOOPER_NUM_FEATURE);
#endif
    for (int64_t k = 0; k < (int64_t)m * LOOPER_NUM_OUTPUT; ++k) o[k] = 0.0;
    for (int u = 0; u < LOOPER_NUM_UNITS; ++u) {
      const looper_unit_fn unit = looper_units[u];
      for (int r = 0; r < m; ++r) unit(e + r * LOOPER_NUM_FEATURE, o + r * LOOPER_NUM_OUTPUT);
    }
    for (int r = 0; r < m; ++r) {
      looper_base_scores(o + r * LOOPER_NUM_OUTPUT);
      if (!pred_margin) postprocess(o + r * LOOPER_NUM_OUTPUT);
    }
  }
#if LOOPER_READS_MISSING_WORD
  free(e);
#endif
  return 1;
}
#endif

void looper_predict_dense(const double* x, int64_t n, int32_t pred_margin, double* out) {
#if LOOPER_NUM_UNITS > 0
  if (n > 1 && looper_predict_blocked(x, n, pred_margin, out)) return;
#endif
  for (int64_t i = 0; i < n; ++i) {
    double* o = out + i * LOOPER_NUM_OUTPUT;
    for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) o[k] = 0.0;
    LOOPER_ENTRIES(e, x + i * LOOPER_NUM_FEATURE);
    predict(e, pred_margin, o);
  }
}
"""

_UNIT_CALL = re.compile(r"^predict_unit(\d+)\(data, result\);$")
_BASE_SCORE = re.compile(
    r"^result\[(\d+)\] \+= ((?:\(double\))?[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?);$"
)
_ALLOWED = {"unsigned int tmp;", "if (!pred_margin) { postprocess(result); }"}


@dataclass(frozen=True)
class PredictLayout:
    """How TL2cgen's ``predict`` is built: translation-unit calls, then base scores."""

    num_units: int
    base_scores: tuple[str, ...]  # C statements, verbatim


def parse_predict(main_c: str) -> PredictLayout | None:
    """Recognise ``predict`` in TL2cgen's main.c; ``None`` if it does anything else.

    The blocked batch path is used only when ``predict`` is exactly: unit calls
    ``predict_unit0..N-1`` in order, ``result[k] += <constant>;`` lines and the
    post-processing call. Anything unexpected keeps batches on the plain row loop.
    """
    m = re.search(
        r"^void predict\(union Entry\* data, int pred_margin, double\* result\) \{\n(.*?)^\}",
        main_c,
        flags=re.S | re.M,
    )
    if m is None:
        return None
    units: list[int] = []
    base: list[str] = []
    saw_postprocess = False
    for raw in m.group(1).splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if (u := _UNIT_CALL.match(line)) is not None:
            if base or saw_postprocess:
                return None
            units.append(int(u.group(1)))
        elif _BASE_SCORE.match(line) is not None:
            if saw_postprocess:
                return None
            base.append(line)
        elif line in _ALLOWED:
            saw_postprocess = saw_postprocess or "postprocess" in line
        else:
            return None
    if not units or units != list(range(len(units))) or not saw_postprocess:
        return None
    return PredictLayout(num_units=len(units), base_scores=tuple(base))


def block_rows(num_feature: int, *, direct: bool = False) -> int:
    """Rows per batch block.

    ``direct`` (rows passed to the trees uncopied): :data:`DIRECT_BLOCK_ROWS`. Otherwise
    about 1 MiB of Entry copies, between 8 and 4,096 rows. Longer runs of one unit are
    faster; measured on 200 trees x 30 features after the rewrite, µs/row: copied, 1,024
    rows 3.44, 4,096 rows 3.25; uncopied, 4,096 rows 3.24, 16,384 3.05, 65,536 2.89
    (2.88 for the whole batch of 100,000 rows in one block).
    """
    if direct:
        return DIRECT_BLOCK_ROWS
    return max(8, min(4096, (1024 * 1024) // (8 * max(1, num_feature))))


def shim_source(
    num_feature: int,
    num_output: int,
    layout: PredictLayout | None = None,
    *,
    reads_missing_word: bool = True,
) -> str:
    """The shim for a model with ``num_feature`` inputs and ``num_output`` outputs.

    ``reads_missing_word``: whether any generated code still tests ``Entry.missing``
    (see :func:`reads_missing_word`); if not, rows are passed to the trees uncopied.
    """
    if num_feature < 1 or num_output < 1:
        raise ValueError("num_feature and num_output must be positive")
    n_units = layout.num_units if layout is not None else 0
    units = ", ".join(f"predict_unit{i}" for i in range(n_units)) or "0"
    base = (
        "\n".join(f"  {line}" for line in (layout.base_scores if layout else ()))
        or "  (void)result;"
    )
    rows = block_rows(num_feature, direct=not reads_missing_word)
    return (
        _TEMPLATE.replace("__NUM_FEATURE__", str(int(num_feature)))
        .replace("__NUM_OUTPUT__", str(int(num_output)))
        .replace("__NUM_UNITS__", str(n_units))
        .replace("__BLOCK_ROWS__", str(rows))
        .replace("__READS_MISSING__", "1" if reads_missing_word else "0")
        .replace("__UNITS__", units)
        .replace("__BASE_SCORES__", base)
        .replace("__ABI__", str(ABI_VERSION))
    )


# Numerical split tests as TL2cgen 1.x writes them, for float64 thresholds:
#   missing goes left:   !(data[7].missing != -1) || (data[7].fvalue <= (double)0.25)
#   missing goes right:   (data[7].missing != -1) && (data[7].fvalue <= (double)0.25)
#   present (threshold +inf, missing right):  (data[7].missing != -1) && (1)
_NUM: Final = r"\(double\)[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_MISSING_LEFT: Final = re.compile(
    r"!\(data\[(\d+)\]\.missing != -1\) \|\| \(data\[\1\]\.fvalue (<=|<|>=|>) (" + _NUM + r")\)"
)
_MISSING_RIGHT: Final = re.compile(
    r"(?<!!)\(data\[(\d+)\]\.missing != -1\) && \(data\[\1\]\.fvalue (<=|<|>=|>|==) ("
    + _NUM
    + r")\)"
)
_PRESENT: Final = re.compile(r"(?<!!)\(data\[(\d+)\]\.missing != -1\) && \(1\)")
_NEGATE: Final = {"<=": ">", "<": ">=", ">": "<=", ">=": "<"}
# Two sibling leaves (one output each) under one test.
_LEAF_PAIR: Final = re.compile(
    r"^(?P<i> *)if \( (?:LIKELY|UNLIKELY)\( (?P<c>[^\n]*) \) \) \{\n"
    r"(?P=i)  result\[(?P<k>\d+)\] \+= (?P<a>[^;\n]+);\n"
    r"(?P=i)\} else \{\n"
    r"(?P=i)  result\[(?P=k)\] \+= (?P<b>[^;\n]+);\n"
    r"(?P=i)\}$",
    re.M,
)


def rewrite_tree_code(src: str) -> str:
    """TL2cgen C source with NaN-based numerical tests and branch-free sibling leaves.

    Exact for every input when missing values are NaN: ``!(v > t)`` is ``v <= t`` for
    every non-NaN ``v`` and true for NaN (missing goes left); ``v <= t`` is false for NaN
    (missing goes right); ``v == v`` is false only for NaN. The sibling-leaf table adds
    the very constant the branch would have added. Anything else (categorical tests,
    other layouts) is left as it is.
    """
    src = _MISSING_LEFT.sub(lambda m: f"!(data[{m[1]}].fvalue {_NEGATE[m[2]]} {m[3]})", src)
    src = _MISSING_RIGHT.sub(lambda m: f"(data[{m[1]}].fvalue {m[2]} {m[3]})", src)
    src = _PRESENT.sub(lambda m: f"(data[{m[1]}].fvalue == data[{m[1]}].fvalue)", src)
    return _LEAF_PAIR.sub(
        lambda m: (
            f"{m['i']}{{ static const double lp[2] = {{ {m['b']}, {m['a']} }}; "
            f"result[{m['k']}] += lp[!!( {m['c']} )]; }}"
        ),
        src,
    )


def reads_missing_word(sources: Iterable[str]) -> bool:
    """Whether any of the generated C sources still tests (or writes) ``Entry.missing``."""
    return any(".missing" in s or ".qvalue" in s for s in sources)
