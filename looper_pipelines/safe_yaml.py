"""The one YAML loader for configuration files (blueprints, import mappings), bounded.

``load_yaml_file(path)`` reads at most ``max_bytes`` bytes, decodes them strictly as UTF-8
(a UTF-16/UTF-32 file or a byte-order mark other than UTF-8's is refused by name), and
composes the document with PyYAML's safe loader under limits checked *before* any Python
object is built:

- nesting depth at most ``max_depth``, at most ``max_nodes`` values (lists, mappings, scalars);
- at most ``max_aliases`` aliases (``*name``), and at most ``max_nodes`` nodes once every
  alias is expanded -- a "billion laughs" file of nested aliases is refused in
  microseconds instead of expanding to 10**9 nodes;
- no duplicate keys in a mapping (PyYAML would silently keep the last one);
- integers within 64 bits (a 5,000-digit integer is refused, not converted);
- only the standard safe tags (``!!python/object`` and friends are refused).

Every failure is a ``YamlInputError`` with ``where`` (``line L, column C`` or ``(file)``)
and a one-line ``problem`` of bounded length.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_PROBLEM_CHARS = 200
_INT_LIMIT = 2**63
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class YamlLimits:
    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_aliases: int = 100
    max_nodes: int = 10_000


DEFAULT_LIMITS = YamlLimits()


class YamlInputError(ValueError):
    """A configuration file that cannot be read as bounded, safe YAML."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = one_line(problem)
        super().__init__(f"{where}: {self.problem}")


def one_line(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``text`` on one line (control characters as spaces), at most about ``limit`` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else f"{flat[:limit]}... ({len(flat)} characters)"


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits of ``YamlLimits`` enforced while composing."""

    limits: YamlLimits = DEFAULT_LIMITS

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._expanded: dict[int, int] = {}
        self._composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        lim = self.limits
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > lim.max_aliases:
                raise YamlInputError(_where(self.peek_event().start_mark),
                                     f"more than {lim.max_aliases} aliases (*name)")
            node: Node = super().compose_node(parent, index)
            return node
        self._depth += 1
        self._composed += 1
        if self._composed > lim.max_nodes:
            raise YamlInputError(_where(self.peek_event().start_mark), f"more than {lim.max_nodes} values")
        if self._depth > lim.max_depth:
            raise YamlInputError(_where(self.peek_event().start_mark),
                                 f"nested more than {lim.max_depth} levels deep")
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._expanded.get(id(c), 1) for c in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._expanded.get(id(k), 1) + self._expanded.get(id(v), 1) for k, v in node.value)
        if size > lim.max_nodes:
            raise YamlInputError(_where(node.start_mark),
                                 f"more than {lim.max_nodes} values once aliases are expanded")
        self._expanded[id(node)] = size
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    dup = key in seen
                except TypeError:
                    continue  # unhashable: the base class reports it
                if dup:
                    raise YamlInputError(_where(key_node.start_mark),
                                         f"duplicate key {_short(key)} (each key may appear once)")
                seen.add(key)
        out: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]
        return out

    def construct_yaml_int(self, node: ScalarNode) -> int:  # type: ignore[override]
        text = str(node.value)
        if len(text) > 40:
            raise YamlInputError(_where(node.start_mark), f"integer {_short(text)} is out of range (64 bits)")
        value: int = super().construct_yaml_int(node)
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise YamlInputError(_where(node.start_mark), f"integer {_short(text)} is out of range (64 bits)")
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _short(v: Any, limit: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit]}... ({len(r)} characters)"


_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def sniff_encoding(head: bytes) -> str | None:
    """Why the first bytes of a text file show it is not UTF-8 (a UTF-16/UTF-32 byte-order
    mark, or NUL bytes between characters), or None. Also used for imported CSV files."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"it is {name} (it starts with a {name} byte-order mark); save it as UTF-8"
    head = head[:64]
    if head and head.count(0) * 4 >= len(head):
        return "it looks like UTF-16 or UTF-32 (NUL bytes between characters); save it as UTF-8"
    return None


def decode_utf8(raw: bytes) -> str:
    """``raw`` as UTF-8 text (a leading UTF-8 byte-order mark dropped); UTF-16/32 and
    anything else that is not UTF-8 is refused with the byte offset of the problem."""
    wrong = sniff_encoding(raw)
    if wrong is not None:
        raise YamlInputError("(file)", wrong)
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise YamlInputError("(file)", f"is not UTF-8 text: byte {raw[e.start]:#04x} at offset {e.start} "
                                       f"({e.reason}); save it as UTF-8") from None
    if "\x00" in text:
        raise YamlInputError("(file)", f"contains a NUL byte at offset {text.index(chr(0))} (a binary file?)")
    return text


def read_text(path: str | os.PathLike[str], limits: YamlLimits = DEFAULT_LIMITS) -> str:
    """The UTF-8 text of a configuration file of at most ``limits.max_bytes`` bytes."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(limits.max_bytes + 1)
    except OSError as e:
        raise YamlInputError("(file)", e.strerror or type(e).__name__) from None
    if len(raw) > limits.max_bytes:
        raise YamlInputError("(file)", f"is larger than {limits.max_bytes} bytes")
    return decode_utf8(raw)


def load_yaml_text(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """One YAML document from ``text``, under ``limits`` (see the module documentation)."""
    if len(text.encode("utf-8", errors="surrogatepass")) > limits.max_bytes:
        raise YamlInputError("(file)", f"is larger than {limits.max_bytes} bytes")
    loader_cls = type("_Loader", (_BoundedLoader,), {"limits": limits}) if limits != DEFAULT_LIMITS else _BoundedLoader
    loader: _BoundedLoader | None = None
    try:
        loader = loader_cls(text)  # the reader checks every character here
        return loader.get_single_data()
    except YamlInputError:
        raise
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise YamlInputError(f"line {line}, column {column}",
                             f"not valid YAML: character U+{e.character:04X} is not allowed") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or type(e).__name__
        raise YamlInputError(_where(mark), f"not valid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise YamlInputError("(file)", f"not valid YAML: {e}") from None
    except (RecursionError, MemoryError, ValueError, OverflowError) as e:
        raise YamlInputError("(file)", f"not valid YAML: {type(e).__name__}: {e}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | os.PathLike[str], limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """One YAML document from the file at ``path`` (see ``read_text`` and ``load_yaml_text``)."""
    return load_yaml_text(read_text(path, limits), limits)
