"""Parse rules YAML *text* into plain data that remembers where each value came from.

Called by the parsers in ``catalog``, ``faults`` and ``policy``; the file itself is read by
``orchestrator.rules``. Validation goes through pydantic; ``validate`` turns a pydantic error into a
``RulesError`` that names the file, the line and what would fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import RulesError

M = TypeVar("M", bound=BaseModel)
Path_ = tuple[str | int, ...]


def load_with_lines(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Return the YAML data and a map from each value's path to its 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        detail = " ".join(str(exc).replace('"<unicode string>"', filename).split())
        raise RulesError(f"{filename}{line}: not valid YAML ({detail}); fix the syntax there"
                         ) from exc
    lines: dict[Path_, int] = {}
    if root is not None:
        _walk(root, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def line_of(lines: dict[Path_, int], path: Sequence[str | int]) -> int | None:
    """The line of the deepest known prefix of ``path``."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())


def fail(filename: str, lines: dict[Path_, int], path: Sequence[str | int],
         message: str) -> RulesError:
    """A RulesError pointing at ``path`` in ``filename``."""
    line = line_of(lines, path)
    where = f"{filename}:{line}" if line else filename
    dotted = ".".join(str(p) for p in path) or "(top level)"
    return RulesError(f"{where}: {dotted}: {message}")


def validate(model: type[M], data: Any, filename: str, lines: dict[Path_, int],
             prefix: Path_ = ()) -> M:
    """Validate ``data`` with ``model``; errors name the file, the line and the fix."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = (*prefix, *(p for p in err["loc"] if not isinstance(p, str) or "[" not in p))
        hint = _hint(err)
        raise fail(filename, lines, loc, f"{err['msg']}{hint}") from exc


def _hint(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return " (unknown key: remove it or check its spelling)"
    if kind == "missing":
        return " (add this key)"
    return ""
