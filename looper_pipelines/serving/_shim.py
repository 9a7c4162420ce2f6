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
- ``looper_abi_version()``, ``looper_num_feature()``, ``looper_num_output()``.

NaN means missing. Since ``missing`` overlaps the low 32 bits of ``fvalue`` (little-endian),
a finite double whose low 32 bits are all ones would read as missing in TL2cgen's own
marshalling; the shim moves such a value one ulp towards zero, which changes no decision
unless a split threshold equals that neighbouring double exactly.

The Entry array lives on the C stack, so concurrent callers share nothing.
"""

from __future__ import annotations

from typing import Final

ABI_VERSION: Final = 1

SHIM_SYMBOLS: Final = (
    "looper_abi_version",
    "looper_num_feature",
    "looper_num_output",
    "looper_predict_one",
    "looper_predict_row",
    "looper_predict_dense",
)

_TEMPLATE: Final = r"""/* Looper dense-input entry points (ABI __ABI__); generated, do not edit. */
#include <math.h>
#include <stdint.h>
#include "header.h"

#define LOOPER_NUM_FEATURE __NUM_FEATURE__
#define LOOPER_NUM_OUTPUT __NUM_OUTPUT__

int32_t looper_abi_version(void) { return __ABI__; }
int32_t looper_num_feature(void) { return LOOPER_NUM_FEATURE; }
int32_t looper_num_output(void) { return LOOPER_NUM_OUTPUT; }

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

void looper_predict_dense(const double* x, int64_t n, int32_t pred_margin, double* out) {
  union Entry e[LOOPER_NUM_FEATURE];
  for (int64_t i = 0; i < n; ++i) {
    double* o = out + i * LOOPER_NUM_OUTPUT;
    for (int k = 0; k < LOOPER_NUM_OUTPUT; ++k) o[k] = 0.0;
    looper_fill(e, x + i * LOOPER_NUM_FEATURE);
    predict(e, pred_margin, o);
  }
}
"""


def shim_source(num_feature: int, num_output: int) -> str:
    """The shim for a model with ``num_feature`` inputs and ``num_output`` outputs."""
    if num_feature < 1 or num_output < 1:
        raise ValueError("num_feature and num_output must be positive")
    return (
        _TEMPLATE.replace("__NUM_FEATURE__", str(int(num_feature)))
        .replace("__NUM_OUTPUT__", str(int(num_output)))
        .replace("__ABI__", str(ABI_VERSION))
    )
