"""Reading YAML safely: PyYAML's safe loader, duplicate keys refused, sizes capped.

Nothing here knows the config's schema; config.py validates what comes out, and maps
each validation error back to a line and column with ``node_at``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ConfigError
from .paths import open_regular

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Limits:
    """Resource limits a config may not exceed (each raisable only by an explicit flag)."""

    config_bytes: int = 1 << 20
    kernel: int = 63  # per axis
    outputs: int = 64  # channels out of one bank
    nodes: int = 200_000  # YAML nodes, aliases expanded
    pixels: int = 3840 * 2160  # per frame

    @property
    def weight_values(self) -> int:
        """Values one weights array (a file's, a model layer's) may hold: the most
        outputs, 64 inputs, the largest kernel."""
        return self.outputs * 64 * self.kernel ** 2


class _Loader(Loader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise ConfigError(f"{mark(key_node, self.name)}: duplicate key {key!r} "
                                  f"(first at line {first})")
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)


def mark(node: yaml.Node, name: str | None = None) -> str:
    m = node.start_mark
    return f"{name or m.name}:{m.line + 1}:{m.column + 1}"


def _count_nodes(node: yaml.Node, limit: int) -> int:
    """Nodes in the document with aliases expanded; stops counting past ``limit``."""
    total, stack = 0, [node]
    while stack:
        n = stack.pop()
        total += 1
        if total > limit:
            return total
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
    return total


def read_yaml(path: str | os.PathLike[str], limits: Limits) -> tuple[Any, yaml.Node]:
    """(data, node tree) of one YAML document; ConfigError for anything unusable."""
    where = os.fspath(path)
    # a FIFO or a device (/dev/zero) is refused before a byte is read, a file by its size
    with open_regular(where, ConfigError, "config", limits.config_bytes) as f:
        try:
            raw = f.read(limits.config_bytes + 1)
        except OSError as e:
            raise ConfigError(f"{where}: cannot read config: {e.strerror or e}") from None
    if len(raw) > limits.config_bytes:  # it grew since it was opened
        raise ConfigError(f"{where}: config is over the limit of "
                          f"{limits.config_bytes / 2**20:g} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: config is not valid UTF-8 at byte {e.start}") from None
    if "\x00" in text:
        raise ConfigError(f"{where}: config contains a NUL byte at offset {text.index(chr(0))}")
    loader = _Loader(text)
    loader.name = where
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{where}: config is empty")
        if _count_nodes(node, limits.nodes) > limits.nodes:
            raise ConfigError(
                f"{where}: config expands to more than {limits.nodes} YAML nodes "
                "(aliases included)")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        where_in = e.problem_mark or e.context_mark
        at = f"{where}:{where_in.line + 1}:{where_in.column + 1}" if where_in else where
        raise ConfigError(f"{at}: {_yaml_problem(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{mark(node, where)}: config must be a mapping (key: value), "
                          f"got a {type(data).__name__}")
    return data, node


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
    if "could not determine a constructor" in problem:
        return f"unsupported YAML tag: {problem.split('tag ')[-1]}"
    return problem


def node_at(node: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest YAML node along a pydantic ``loc`` (a key's node for unknown keys)."""
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    node = v if i < len(loc) - 1 else k
                    break  # (parts not in the YAML, like a union's tag, are skipped)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node
