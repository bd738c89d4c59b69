"""Front end: YAML text to (data, SourceMap) with line:column marks and no YAML 1.1 traps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mummi_spec.errors import SourceLocation, SpecErrors, SpecSyntaxError
from mummi_spec.sourcemap import JsonPath, SourceMap

# A spec needs aliases for a few repeated blocks; nine nested levels of nine aliases each
# (under 1 KiB of text) would expand to 387 million nodes. Past this many nodes added by
# aliases, the spec is refused at the alias that crossed the line.
MAX_ALIASED_NODES = 10_000


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``1:30:00``, ``on``, ``yes``, ``017`` and dates as strings.

    It also bounds what aliases add (``MAX_ALIASED_NODES``) and refuses an alias inside the
    node it names, each at the alias's own line and column.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliased_nodes = 0
        self._open_anchors: set[str] = set()  # anchors whose node is still being composed
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """Charge each alias its expanded size; compose everything else as PyYAML does."""
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent) and event.anchor in self.anchors:
            self._charge(event)
            return super().compose_node(parent, index)
        anchor = event.anchor if isinstance(event, ScalarEvent | CollectionStartEvent) else None
        if anchor is None:
            return super().compose_node(parent, index)
        self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.discard(anchor)

    def _charge(self, alias: AliasEvent) -> None:
        anchor, mark = str(alias.anchor), alias.start_mark
        if anchor in self._open_anchors:
            raise AliasError(f"alias '*{anchor}' refers to a node that contains it", mark,
                             "an alias may only name a node that ends before it")
        self._aliased_nodes += _expanded_size(self.anchors[anchor], self._sizes)
        if self._aliased_nodes > MAX_ALIASED_NODES:
            raise AliasError(
                f"aliases expand the spec by more than {MAX_ALIASED_NODES} nodes "
                f"(limit reached at '*{anchor}')", mark,
                "a spec needs few aliases: write the repeated part out, or use a profile")


class AliasError(yaml.composer.ComposerError):
    """An alias that names its own ancestor, or one too many: carries a hint for the user."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:  # a composer mark
        super().__init__(None, None, problem, mark)
        self.hint = hint


def _expanded_size(node: Node, sizes: dict[int, int]) -> int:
    # Only called on complete nodes, which hold no cycle; memoised, so linear in the text.
    known = sizes.get(id(node))
    if known is not None:
        return known
    if isinstance(node, MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes)
                       for k, v in node.value)
    elif isinstance(node, SequenceNode):
        size = 1 + sum(_expanded_size(v, sizes) for v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def _shares_nodes(root: Node) -> bool:
    # True when some node is reached twice, i.e. the text has an alias (or a cycle).
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return False


# Drop every implicit resolver, then re-add only YAML 1.2's core bool, int, float and null:
# walltimes such as 1:30:00 are base-60 ints in YAML 1.1, and `on`/`yes` are booleans.
SpecLoader.yaml_implicit_resolvers = {}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf")
)
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*))$"), list("-+0123456789")
)
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*(?:[eE][-+]?[0-9]+)?"
               r"|(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+|\.[0-9]+(?:[eE][-+]?[0-9]+)?))$"),
    list("-+0123456789."),
)
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|)$"),
                                 ["~", "n", ""])

# libyaml parses a valid spec several times faster than pure Python (most of `mummi compile`'s
# own time); the resolvers above still decide the types. Its errors are worded differently,
# so any failure re-parses with SpecLoader, whose messages the error tests pin down. libyaml's
# composer cannot be hooked to bound aliases, so a document that has any is left to SpecLoader.
_FastLoader: type[Any] | None = None
if getattr(yaml, "__with_libyaml__", False):
    class _CSpecLoader(yaml.CSafeLoader):
        """SpecLoader's typing rules on libyaml's parser."""

    _CSpecLoader.yaml_implicit_resolvers = SpecLoader.yaml_implicit_resolvers
    _FastLoader = _CSpecLoader


def _loc(file: str, node: Node) -> SourceLocation:
    # PyYAML marks are 0-based.
    return SourceLocation(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(file: str, node: Node, path: JsonPath, smap: SourceMap,
          errors: list[SpecSyntaxError]) -> None:
    smap.values[path] = _loc(file, node)
    # A plain scalar's style is None from PyYAML and "" from libyaml.
    if isinstance(node, ScalarNode) and not node.style and "${" in node.value:
        smap.plain.add(path)  # a plain `${N}` may become an int once substituted
    if isinstance(node, MappingNode):
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                errors.append(SpecSyntaxError("mapping keys must be plain scalars",
                                              _loc(file, key_node)))
                continue
            key = key_node.value
            if key in first_seen:
                errors.append(SpecSyntaxError(
                    f"duplicate key '{key}'", _loc(file, key_node),
                    hint=f"first defined on line {first_seen[key]}"))
                continue
            first_seen[key] = key_node.start_mark.line + 1
            smap.keys[(*path, key)] = _loc(file, key_node)
            _walk(file, value_node, (*path, key), smap, errors)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _walk(file, item, (*path, i), smap, errors)


def _stringify_keys(data: Any) -> Any:
    # A key such as `1` or `true` is still a name in a spec; JSON Schema needs strings.
    if isinstance(data, dict):
        return {str(k): _stringify_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_stringify_keys(v) for v in data]
    return data


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> SpecSyntaxError:
    # The reader reports a character offset, not a line: count it ourselves.
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    return SpecSyntaxError(f"character {exc.character!r} is not allowed in YAML",
                           SourceLocation(file, line, column),
                           hint="remove control characters; a spec is plain UTF-8 text")


class _AliasesError(Exception):
    """The fast loader met an alias: SpecLoader must parse the document."""


def load_text(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document, recording where every key and value came from."""
    if _FastLoader is not None:
        try:
            return _parse(_FastLoader, text, file)
        except Exception:  # whatever libyaml objects to (or chokes on), SpecLoader explains
            pass
    return _parse(SpecLoader, text, file)


def _parse(loader_class: type[Any], text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        loader = loader_class(text)
    except yaml.reader.ReaderError as exc:
        raise SpecErrors([_reader_error(exc, text, file)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecErrors([SpecSyntaxError("the spec is empty", SourceLocation(file, 1, 1),
                                              hint="start with 'spec: mummi/v1'")])
        if loader_class is not SpecLoader and _shares_nodes(node):
            raise _AliasesError
        smap = SourceMap(file)
        errors: list[SpecSyntaxError] = []
        _walk(file, node, (), smap, errors)
        if errors:
            raise SpecErrors(errors)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLocation(file, mark.line + 1, mark.column + 1) if mark else None
        message = " ".join(p for p in (exc.context, exc.problem) if p)
        hint = exc.hint if isinstance(exc, AliasError) else None
        if exc.context_mark is not None and exc.problem_mark is not None and \
                exc.context_mark.line != exc.problem_mark.line:
            hint = f"the construct began on line {exc.context_mark.line + 1}"
        raise SpecErrors([SpecSyntaxError(message or "invalid YAML", loc, hint=hint)]) from None
    except yaml.reader.ReaderError as exc:
        raise SpecErrors([_reader_error(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([SpecSyntaxError(f"invalid YAML: {exc}",
                                          SourceLocation(file, 1, 1))]) from None
    finally:
        loader.dispose()
    return _stringify_keys(data), smap


def load_file(path: str | Path) -> tuple[Any, SourceMap, str]:
    """Read and parse a spec file; returns (data, source map, text)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecErrors([SpecSyntaxError(f"cannot read the spec: {exc}",
                                          SourceLocation(str(path), 1, 1))]) from None
    data, smap = load_text(text, str(path))
    return data, smap, text
