"""Reading a pipeline file with bounds, so a hostile or broken file is one clear error.

An 862-byte YAML alias bomb ("billion laughs") is harmless to PyYAML itself, which
shares aliased nodes, but every walk over the loaded tree (variable substitution, the
model) expands it exponentially. So the file's size is capped, and the tree's
*expanded* size is counted on the composed node graph (linear, shared nodes counted
once per use) before anything walks it. A recursive alias, a file nested deeper than
the parser can follow, non-UTF-8 bytes: each becomes a `(where, problem)` pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: A pipeline definition is a page of YAML; anything near this is not one.
MAX_BYTES = 1024 * 1024
#: Values after alias expansion: hundreds for a real pipeline, billions for a bomb.
MAX_NODES = 100_000


class YamlFileError(Exception):
    """The file cannot be read as a bounded YAML mapping; `where` and `problem` say why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def read_yaml(file: Path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """The parsed YAML of `file`, or YamlFileError naming what is wrong and where."""
    try:
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise YamlFileError("(file)", f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise YamlFileError("(file)", f"larger than {max_bytes:,} bytes; not a pipeline definition")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlFileError(
            f"line {line}", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses unprintable characters already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        if isinstance(exc, yaml.reader.ReaderError):  # its message spans lines and quotes the file
            line = text[: exc.position].count("\n") + 1
            raise YamlFileError(
                f"line {line}",
                f"not valid YAML: a control character (#x{exc.character:04x}) is not allowed",
            ) from None
        raise YamlFileError(
            where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    except RecursionError:
        raise YamlFileError("(file)", "YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expanded_size(root: yaml.Node, limit: int) -> None:
    """Refuse a node graph whose aliases expand past `limit` values, or refer to themselves."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                raise YamlFileError(
                    "(file)",
                    f"expands to more than {limit:,} values "
                    "(YAML aliases nested too deep: an alias bomb?)",
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            mark = node.start_mark
            raise YamlFileError(
                f"line {mark.line + 1}" if mark else "(file)", "a YAML alias refers to itself"
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
