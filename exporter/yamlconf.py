"""YAML files as the configuration reads them: safe reading, one loader, one way to report problems.

Used for the configuration file, its task files and the web configuration, so they share one
message style: every problem is one line starting with its YAML path (`api.timeout: …`), with
`(line N, column M)` where the file has it, and "did you mean" for a misspelt key.

- `read_regular_file` reads only regular files (after following symlinks), of bounded size,
  within a timeout: a FIFO, a device or a folder is a one-line error, never a hang.
- `load_yaml` rejects duplicate keys, keeps dates as strings, remembers how each number was
  written (`SourceInt`, `SourceFloat`), bounds nesting and alias expansion, records where each
  YAML path is, and never converts the value of a secret key with a tag constructor: a string
  stays a string, anything else becomes an `Unconverted` that says what it is without its text.
  The texts under secret keys go to the secret registry before any message is made.
- `compose_yaml` is the same reading and composing, for readers that need each scalar as
  written with its tag (the web configuration reads it as Go's yaml.v2 does).
- `Report` collects problems; its `section` and `fields` walk the data.

Not pydantic: its messages (`Input should be a valid string [input_value=…]`) echo values, secrets
included, name paths as `tasks.1`, have no "did you mean", and see numbers only after YAML
converted them; every rule here (durations, trans_nos, labels, cross-field checks) would still be
a custom validator, so it would add a dependency without cutting the code.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter import redaction

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "MAX_YAML_BYTES",
    "READ_TIMEOUT",
    "Document",
    "FileReadError",
    "Position",
    "Report",
    "SourceFloat",
    "SourceInt",
    "Unconverted",
    "YamlError",
    "compose_yaml",
    "join_path",
    "load_yaml",
    "node_positions",
    "read_regular_file",
    "scalar_text",
    "show",
    "unknown_key",
]

# 16 MiB holds some 150,000 tasks with labels; a larger file is a mistake (or /dev/zero).
MAX_YAML_BYTES = 16 * 1024 * 1024
READ_TIMEOUT = 5.0  # seconds; a local file reads in microseconds, a hung NFS mount never does
MAX_DEPTH = 64  # a configuration nests 5 levels deep
MAX_VALUES = 500_000  # values after alias expansion: a "billion laughs" file stops here (in 1s)


# --- reading files ---------------------------------------------------------------------------


class FileReadError(Exception):
    """A file that cannot be read as configuration; str() is the reason, without the path."""


_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    timeout: float = READ_TIMEOUT,
    read_file: Callable[[str, int], bytes] | None = None,
) -> bytes:
    """The bytes of a regular file of at most max_bytes, read within timeout seconds.

    Symlinks are followed. The file is opened with O_NONBLOCK, so a FIFO without a writer cannot
    block the open, and checked with fstat before any read. The read runs in a helper thread: a
    file system that never answers costs that thread, not the caller (nor a reload's lock).
    `read_file(path, max_bytes)` replaces the open-check-read step (tests pass a stuck one).
    """
    reader_function = read_file or _read_regular
    result: list[bytes] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            result.append(reader_function(os.fspath(path), max_bytes))
        except BaseException as exc:  # handed to the waiting caller
            failure.append(exc)

    reader = threading.Thread(target=read, name="config-file-read", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise FileReadError(f"not read within {timeout:g}s (a hung network file system?)")
    if failure:
        raise failure[0]
    return result[0]


def _read_regular(path: str, max_bytes: int) -> bytes:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileReadError(exc.strerror or type(exc).__name__) from None
    try:
        mode = os.fstat(fd).st_mode
        for check, reason in _KINDS:
            if check(mode):
                raise FileReadError(reason)
        if not stat.S_ISREG(mode):
            raise FileReadError("is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileReadError(f"is larger than {max_bytes} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise FileReadError(exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)


# --- values ----------------------------------------------------------------------------------


class SourceInt(int):
    """An int read from YAML that remembers how it was written ("0123", "+10:00")."""

    source: str


class SourceFloat(float):
    """A float read from YAML that remembers how it was written ("1.10")."""

    source: str


@dataclass(frozen=True)
class Unconverted:
    """The value of a secret key that is not a plain string, described without its text."""

    kind: str  # "a number", "true/false", "a value tagged !!int", "a mapping", ...


def show(value: object) -> str:
    """A value as a message quotes it: scalars as written, containers by their kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SourceInt | SourceFloat):
        return value.source
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Unconverted):
        return value.kind
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def scalar_text(value: object) -> str | None:
    """A string, or a number as it was written; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, SourceInt | SourceFloat):
        return value.source
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def join_path(path: str, key: object) -> str:
    """The YAML path of a mapping key below path (`api.timeout`, `labels["a.b"]`)."""
    name = key if isinstance(key, str) else show(key)
    if not _PLAIN_KEY_RE.fullmatch(name):
        quoted = f"[{json.dumps(name, ensure_ascii=False)}]"
        return path + quoted
    return f"{path}.{name}" if path else name


_LAST_PART_RE = re.compile(r'(?:\.[A-Za-z0-9_-]+|\[[0-9]+\]|\["(?:[^"\\]|\\.)*"\])\Z')


def _parent(path: str) -> str:
    """The path one level up ("" at the top)."""
    match = _LAST_PART_RE.search(path)
    if match is None:
        return ""
    return path[: match.start()]


# --- problems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a YAML path is in its file (1-based)."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass
class Report:
    """Collects problems, one line each: `[prefix: ]path: message (line N, column M)`.

    `prefix` names the file (for task files), `positions` says where each YAML path is.
    """

    problems: list[str] = field(default_factory=list)
    prefix: str = ""
    positions: Mapping[str, Position] = field(default_factory=dict)

    def position(self, path: str) -> Position | None:
        """Where path (or the nearest enclosing path that the file has) is."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = _parent(path)
        return None

    def add(self, path: str, message: str, *, at: Position | None = None) -> None:
        """Record one problem at a YAML path ("" for the whole document)."""
        where = f"{self.prefix}: {path}" if self.prefix and path else (self.prefix or path)
        position = at or self.position(path)
        suffix = f" ({position})" if position is not None else ""
        self.problems.append(f"{where}: {message}{suffix}")

    def section(
        self,
        value: object,
        path: str,
        keys: Collection[str],
        *,
        notes: Mapping[str, str] | None = None,
    ) -> dict[str, object] | None:
        """The set entries of a mapping with only known keys ({} if null, None if not a mapping).

        `notes` gives a message for keys that are recognised but refused ("not supported").
        """
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, got {show(value)}")
            return None
        entries: dict[str, object] = {}
        for key, item in value.items():
            if notes and isinstance(key, str) and key in notes:
                self.add(join_path(path, key), notes[key])
            elif not isinstance(key, str) or key not in keys:
                self.add(join_path(path, key), unknown_key(key, keys))
            elif item is not None:  # a key left empty means "use the default"
                entries[key] = item
        return entries

    def fields(
        self,
        section: Mapping[str, object],
        path: str,
        converters: Mapping[str, Callable[[object], Any]],
    ) -> dict[str, Any]:
        """The converted entries that are set and valid, by key: keyword arguments for a
        dataclass, which declares the defaults of the rest."""
        values: dict[str, Any] = {}
        for key, convert in converters.items():
            if key in section:
                try:
                    values[key] = convert(section[key])
                except ValueError as exc:
                    self.add(join_path(path, key), str(exc))
        return values


class YamlError(Exception):
    """A file that is not valid YAML (or cannot be read): one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: its data, where each YAML path is, and problems found while loading
    (duplicate keys) that the caller reports together with its own."""

    data: object
    positions: Mapping[str, Position]
    problems: tuple[tuple[str, str, Position], ...] = ()  # (YAML path, message, where)

    def report(self, problems: list[str], prefix: str = "", root: str = "") -> Report:
        """A Report over this file's positions, with this file's loading problems added.

        `root` is prepended to every path (a task file that is a bare list reads as `tasks`).
        """
        positions = self.positions if not root else {root + k: v for k, v in self.positions.items()}
        report = Report(problems, prefix, positions)
        for path, message, position in self.problems:
            report.add(root + path, message, at=position)
        return report


# --- loading ---------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_KIND_OF_TAG = {
    _TAG + "int": "a number",
    _TAG + "float": "a number",
    _TAG + "bool": "true/false",
    _TAG + "timestamp": "a date",
    _TAG + "binary": "binary data",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds nesting and keeps numbers as written and dates as strings."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """A node, refusing nesting deeper than MAX_DEPTH (the composer recurses per level)."""
        if self.depth >= MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested too deeply (more than {MAX_DEPTH} levels)", event.start_mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    number = SourceInt(loader.construct_yaml_int(node))
    number.source = str(node.value)
    return number


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    number = SourceFloat(loader.construct_yaml_float(node))
    number.source = str(node.value)
    return number


def _construct_timestamp(loader: yaml.SafeLoader, node: ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor(_TAG + "int", _construct_int)
_Loader.add_constructor(_TAG + "float", _construct_float)
_Loader.add_constructor(_TAG + "timestamp", _construct_timestamp)


class _Fatal(Exception):
    """A problem that stops loading: (path, message, mark)."""

    def __init__(self, path: str, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.path, self.message, self.mark = path, message, mark


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    """Builds plain data from the node graph, top-down, so that it knows each value's path."""

    def __init__(self, loader: _Loader, secret_keys: Collection[str]) -> None:
        self.loader = loader
        self.secret_keys = secret_keys
        self.positions: dict[str, Position] = {}
        self.problems: list[tuple[str, str, Position]] = []
        self.secrets: list[str] = []
        self.values = 0
        self.depth = 0

    def value(self, node: Node, path: str) -> object:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Fatal(path, f"aliases expand to more than {MAX_VALUES} values", node.start_mark)
        if self.depth >= MAX_DEPTH:  # an alias can refer to the collection it is in
            raise _Fatal(path, f"nested too deeply (more than {MAX_DEPTH} levels)", node.start_mark)
        self.depth += 1
        try:
            if isinstance(node, MappingNode) and node.tag == _TAG + "map":
                return self.mapping(node, path)
            if isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
                return [self.item(child, path, i) for i, child in enumerate(node.value)]
            return self.other(node, path)
        finally:
            self.depth -= 1

    def item(self, node: Node, path: str, index: int) -> object:
        where = f"{path}[{index}]"
        self.positions.setdefault(where, _position(node.start_mark))
        return self.value(node, where)

    def other(self, node: Node, path: str) -> object:
        """A scalar, or a collection with another tag (!!set, !!omap), by PyYAML's constructors."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise _Fatal(path, str(exc.problem or exc.context), node.start_mark) from None
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            # int("...") and friends quote the text in their message: say only what failed.
            raise _Fatal(
                path, f"the value cannot be read as {_short_tag(node.tag)}", node.start_mark
            ) from None

    def key(self, node: Node, path: str) -> Hashable:
        if not isinstance(node, ScalarNode):
            raise _Fatal(path, "a mapping key must be a plain value", node.start_mark)
        key = self.other(node, path)
        assert isinstance(key, Hashable)  # scalars construct to hashable values
        return key

    def mapping(self, node: MappingNode, path: str) -> dict[Hashable, object]:
        result: dict[Hashable, object] = {}
        first: dict[Hashable, Position] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            where = join_path(path, key)
            here = _position(key_node.start_mark)
            is_secret = isinstance(key, str) and key in self.secret_keys
            if key in first:
                if is_secret:
                    self.remember_secret(value_node, 0)
                self.problems.append((where, f"duplicate key (first at {first[key]})", here))
                continue
            first[key] = here
            self.positions.setdefault(where, here)
            result[key] = self.secret(value_node) if is_secret else self.value(value_node, where)
        for merge in merges:  # explicit keys win; the first merged mapping wins over later ones
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _Fatal(path, "<< can only merge mappings", source.start_mark)
                for key, value in self.mapping(source, path).items():
                    result.setdefault(key, value)
        return result

    def secret(self, node: Node) -> object:
        """A secret key's value: a string as written, never handed to a tag constructor."""
        self.remember_secret(node, 0)
        if not isinstance(node, ScalarNode):
            return Unconverted("a mapping" if isinstance(node, MappingNode) else "a list")
        if node.tag == _TAG + "str":
            return str(node.value)
        # The tag a scalar of this style would get from its text alone: another one was written.
        plain = node.style is None
        written = self.loader.resolve(ScalarNode, node.value, (plain, not plain))  # type: ignore[no-untyped-call]
        explicit = written != node.tag
        if node.tag == _TAG + "null" and not explicit:
            return None  # a key left empty means "use the default"
        if not node.tag.startswith(_TAG):
            return Unconverted("a value with a custom tag")  # its name is the user's text
        kind = None if explicit else _KIND_OF_TAG.get(node.tag)
        return Unconverted(kind or f"a value tagged {_short_tag(node.tag)}")

    def remember_secret(self, node: Node, depth: int) -> None:
        """Register every text under a secret key, so that no message can show it."""
        if depth > MAX_DEPTH:
            return
        if isinstance(node, ScalarNode):
            text = str(node.value)
            self.secrets.extend({text, text.strip()} - {""})
        elif isinstance(node, SequenceNode):
            for child in node.value:
                self.remember_secret(child, depth + 1)
        elif isinstance(node, MappingNode):
            for pair in node.value:
                for child in pair:
                    self.remember_secret(child, depth + 1)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def compose_yaml(
    path: str | os.PathLike[str],
    *,
    secret_keys: Collection[str] = (),
    max_bytes: int = MAX_YAML_BYTES,
    timeout: float = READ_TIMEOUT,
) -> Node | None:
    """Read one YAML file into its node graph (None if empty); problems raise a YamlError.

    For readers that need scalars exactly as written, tags and styles included (the web
    configuration reads them as Go's yaml.v2 does); `load_yaml` builds plain data from it.
    """
    name = os.fspath(path)
    try:
        raw = read_regular_file(path, max_bytes=max_bytes, timeout=timeout)
    except FileReadError as exc:
        raise YamlError([f"{name}: cannot read: {exc}"]) from None
    try:
        loader = _Loader(raw)  # reads the first chunk: may raise a ReaderError
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        _register(_inline_secrets(raw, secret_keys))
        raise YamlError([redaction.redact(_syntax_problem(name, exc))]) from None
    except yaml.reader.ReaderError as exc:
        line = raw[: exc.position].count(b"\n") + 1
        what = f"not {exc.encoding} text" if exc.encoding else str(exc).splitlines()[0]
        if exc.encoding:
            what += f" ({exc.reason})"
        raise YamlError([f"{name}:{line}: invalid YAML: {what}"]) from None
    except yaml.YAMLError as exc:
        _register(_inline_secrets(raw, secret_keys))
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise YamlError([redaction.redact(f"{name}: invalid YAML: {first_line}")]) from None
    except RecursionError:
        raise YamlError([f"{name}: invalid YAML: nested too deeply"]) from None


def load_yaml(
    path: str | os.PathLike[str],
    *,
    secret_keys: Collection[str] = (),
    max_bytes: int = MAX_YAML_BYTES,
    timeout: float = READ_TIMEOUT,
) -> Document:
    """Read and load one YAML file; any file or syntax problem raises a one-line YamlError.

    The values of `secret_keys` (wherever they appear) are registered as secrets before any
    message is made, and every message of the file is redacted.
    """
    root = compose_yaml(path, secret_keys=secret_keys, max_bytes=max_bytes, timeout=timeout)
    builder = _Builder(_Loader(b""), secret_keys)  # the loader serves as the constructor only
    try:
        data = None if root is None else builder.value(root, "")
    except _Fatal as exc:
        _register(builder.secrets)
        where = exc.path if len(exc.path) <= 80 else exc.path[:80] + "..."
        start = f"{os.fspath(path)}:{exc.mark.line + 1}:{exc.mark.column + 1}: invalid YAML: "
        message = start + (f"{where}: " if where else "") + exc.message
        raise YamlError([redaction.redact(message)]) from None
    _register(builder.secrets)
    problems = tuple((p, redaction.redact(m), at) for p, m, at in builder.problems)
    return Document(data, builder.positions, problems)


def node_positions(root: Node | None) -> dict[str, Position]:
    """Where each YAML path of a node graph is, with mapping keys as written (`yes`, `0123`)."""
    positions: dict[str, Position] = {}
    todo: list[tuple[Node, str, int]] = [] if root is None else [(root, "", 0)]
    while todo and len(positions) < MAX_VALUES:
        node, path, depth = todo.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _TAG + "merge":
                    where = join_path(path, str(key_node.value))
                    positions.setdefault(where, _position(key_node.start_mark))
                    todo.append((value_node, where, depth + 1))
        elif isinstance(node, SequenceNode):
            for index, child in enumerate(node.value):
                where = f"{path}[{index}]"
                positions.setdefault(where, _position(child.start_mark))
                todo.append((child, where, depth + 1))
    return positions


def unknown_key(key: object, known: Collection[str]) -> str:
    """The message for a key that is not one of known: "unknown key (did you mean X?)"."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"unknown key (did you mean {close[0]}?)" if close else "unknown key"


def _register(secrets: list[str]) -> None:
    for secret in secrets:
        redaction.register_secret(secret)


def _syntax_problem(name: str, exc: yaml.MarkedYAMLError) -> str:
    """`file:line:column: invalid YAML: …` at the mark where the mistake is.

    PyYAML marks where it noticed the problem; for a construct left open (a quote, a bracket, a
    key without `:`) that is often lines later, at the end of the file, so the start of the
    construct is named first then. Only marks and PyYAML's own words: never the line's text.
    """
    problem, context = exc.problem or "", exc.context or ""
    problem_mark, context_mark = exc.problem_mark, exc.context_mark
    opened = context.startswith("while scanning a") or context.startswith(
        ("while parsing a flow sequence", "while parsing a flow mapping")
    )
    if context_mark is not None and (opened or problem_mark is None):
        text = f"{context}: {problem}" if problem else context
        if problem_mark is not None and problem:
            text += f" at {_position(problem_mark)}"
        return f"{name}:{context_mark.line + 1}:{context_mark.column + 1}: invalid YAML: {text}"
    if problem_mark is None:
        return f"{name}: invalid YAML: {problem or context}"
    text = problem or context
    if context and context_mark is not None:
        text += f" ({context} at {_position(context_mark)})"
    elif context:
        text += f" ({context})"
    return f"{name}:{problem_mark.line + 1}:{problem_mark.column + 1}: invalid YAML: {text}"


def _inline_secrets(raw: bytes, secret_keys: Collection[str]) -> list[str]:
    """Best effort for a file that does not parse: the texts after `secret_key:` on any line."""
    if not secret_keys:
        return []
    text = raw.decode("utf-8", errors="replace")
    keys = "|".join(re.escape(key) for key in secret_keys)
    pattern = re.compile(rf"""(?:{keys})["']?\s*:\s*(?:!\S*\s+)?["']?([^"'\s#,}}\]]+)""")
    found = pattern.findall(text)
    # `*name` and `&name` are aliases and anchors: PyYAML's messages quote the name alone.
    return found + [token.lstrip("*&") for token in found]
