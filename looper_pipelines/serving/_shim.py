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
- ``looper_abi_version()``, ``looper_num_feature()``, ``looper_num_output()``,
  ``looper_batch_block_rows()``.

Batches run *blocked* when TL2cgen split the trees into several translation units
(``parallel_comp`` ≥ 2): each unit (a group of trees) runs over a block of rows before
the next unit starts, which keeps its code and branch-predictor state warm and is about
twice as fast per row as walking every tree for one row after another. The arithmetic
per row and its order are those of ``predict``, so results are bit-identical.

NaN means missing. Since ``missing`` overlaps the low 32 bits of ``fvalue`` (little-endian),
a finite double whose low 32 bits are all ones would read as missing in TL2cgen's own
marshalling; the shim moves such a value one ulp towards zero, which changes no decision
unless a split threshold equals that neighbouring double exactly.

The Entry array lives on the C stack, so concurrent callers share nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

ABI_VERSION: Final = 1

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

int32_t looper_abi_version(void) { return __ABI__; }
int32_t looper_num_feature(void) { return LOOPER_NUM_FEATURE; }
int32_t looper_num_output(void) { return LOOPER_NUM_OUTPUT; }
int32_t looper_batch_block_rows(void) { return LOOPER_NUM_UNITS > 0 ? LOOPER_BLOCK_ROWS : 1; }

static inline void looper_fill(union Entry* e, const double* x) {
  for (int j = 0; j < LOOPER_NUM_FEATURE; ++j) {
    const double v = x[j];
    if (isnan(v)) {
      e[j].missing = -1;
    } else {
      e[j].fvalue = v;
      if (e[j].missing == -1) {
        e[j].fvalue = nextafter(v, 0.0);
      }
    }
  }
}

double looper_predict_one(const double* x) {
  union Entry e[LOOPER_NUM_FEATURE];
  double r[LOOPER_NUM_OUTPUT];
  for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) r[k] = 0.0;
  looper_fill(e, x);
  predict(e, 0, r);
  return r[0];
}

void looper_predict_row(const double* x, double* out) {
  union Entry e[LOOPER_NUM_FEATURE];
  for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) out[k] = 0.0;
  looper_fill(e, x);
  predict(e, 0, out);
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
  union Entry* e = (union Entry*)malloc(sizeof(union Entry) * LOOPER_BLOCK_ROWS * LOOPER_NUM_FEATURE);
  if (e == NULL) return 0;
  for (int64_t i0 = 0; i0 < n; i0 += LOOPER_BLOCK_ROWS) {
    const int m = (n - i0 < LOOPER_BLOCK_ROWS) ? (int)(n - i0) : LOOPER_BLOCK_ROWS;
    double* o = out + i0 * LOOPER_NUM_OUTPUT;
    for (int r = 0; r < m; ++r) {
      looper_fill(e + r * LOOPER_NUM_FEATURE, x + (i0 + r) * LOOPER_NUM_FEATURE);
      for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) o[r * LOOPER_NUM_OUTPUT + k] = 0.0;
    }
    for (int u = 0; u < LOOPER_NUM_UNITS; ++u) {
      const looper_unit_fn unit = looper_units[u];
      for (int r = 0; r < m; ++r) unit(e + r * LOOPER_NUM_FEATURE, o + r * LOOPER_NUM_OUTPUT);
    }
    for (int r = 0; r < m; ++r) {
      looper_base_scores(o + r * LOOPER_NUM_OUTPUT);
      if (!pred_margin) postprocess(o + r * LOOPER_NUM_OUTPUT);
    }
  }
  free(e);
  return 1;
}
#endif

void looper_predict_dense(const double* x, int64_t n, int32_t pred_margin, double* out) {
#if LOOPER_NUM_UNITS > 0
  if (n > 1 && looper_predict_blocked(x, n, pred_margin, out)) return;
#endif
  union Entry e[LOOPER_NUM_FEATURE];
  for (int64_t i = 0; i < n; ++i) {
    double* o = out + i * LOOPER_NUM_OUTPUT;
    for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) o[k] = 0.0;
    looper_fill(e, x + i * LOOPER_NUM_FEATURE);
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


def block_rows(num_feature: int) -> int:
    """Rows per batch block: about 256 KiB of entries, between 8 and 1,024 rows.

    Measured on 200 trees x 30 features: 32 rows 6.5 µs/row, 256 rows 5.4, 1,024 rows 4.8.
    """
    return max(8, min(1024, (256 * 1024) // (8 * max(1, num_feature))))


def shim_source(num_feature: int, num_output: int, layout: PredictLayout | None = None) -> str:
    """The shim for a model with ``num_feature`` inputs and ``num_output`` outputs."""
    if num_feature < 1 or num_output < 1:
        raise ValueError("num_feature and num_output must be positive")
    n_units = layout.num_units if layout is not None else 0
    units = ", ".join(f"predict_unit{i}" for i in range(n_units)) or "0"
    base = (
        "\n".join(f"  {line}" for line in (layout.base_scores if layout else ()))
        or "  (void)result;"
    )
    return (
        _TEMPLATE.replace("__NUM_FEATURE__", str(int(num_feature)))
        .replace("__NUM_OUTPUT__", str(int(num_output)))
        .replace("__NUM_UNITS__", str(n_units))
        .replace("__BLOCK_ROWS__", str(block_rows(num_feature)))
        .replace("__UNITS__", units)
        .replace("__BASE_SCORES__", base)
        .replace("__ABI__", str(ABI_VERSION))
    )
