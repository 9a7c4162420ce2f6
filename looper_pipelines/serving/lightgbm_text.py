"""Reading LightGBM's text model format (``Booster.model_to_string()``).

Layout: header lines (``key=value``, and bare flags such as ``average_output``), then one
block per tree starting ``Tree=<i>``, then ``end of trees``, then the feature importances
(``<feature name>=<count>``) and the training parameters. Only the text up to ``end of
trees`` describes the trees: read past it, a feature named ``threshold`` or
``leaf_value`` passes for a field of the last tree.
"""

from __future__ import annotations

END_OF_TREES = "end of trees"


def header(model_str: str) -> dict[str, str]:
    """The header's ``key=value`` lines; bare flags map to ``""``."""
    out: dict[str, str] = {}
    for line in model_str.splitlines():
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if key.strip():
            out[key.strip()] = value.strip() if sep else ""
    return out


def trees_text(model_str: str) -> str:
    """The model text up to and including ``end of trees`` (what describes the trees)."""
    return model_str.split("\n" + END_OF_TREES, 1)[0] + "\n" + END_OF_TREES + "\n"


def tree_blocks(model_str: str) -> list[dict[str, str]]:
    """The ``key=value`` fields of each tree, in order."""
    _, _, body = trees_text(model_str).partition("\nTree=")
    blocks = []
    for block in ("Tree=" + body).split("\nTree="):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "num_leaves" in fields:
            blocks.append(fields)
    return blocks
