"""Loading a configuration file: YAML in, a validated `Config` out, or every problem at once.

The YAML is composed into nodes first (they keep their line numbers), duplicate keys are found there
(a plain load would keep the last one silently), then the constructed data is validated by the schema.
Each pydantic error's location (``('sources', 0, 'folder', 'stabel_s')``) is mapped back to the key
path (``sources[0].stabel_s``) and to its node, for the line; the message is rewritten in this project's
words: "unknown key (did you mean 'stable_s'?)", "expected a number, got a string ('fast')", "must be at
least 1, got 0". All of them are raised together as one `ConfigFileError`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError

from edge_ocr.config.schema import SOURCE_TYPES, Config, FolderSource
from edge_ocr.errors import ConfigError

Part = str | int
_MERGE = "tag:yaml.org,2002:merge"
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
_SECRET_KEYS = {
    "password": "password_file, password_env or password_credential",
    "key_password": "key_password_file, key_password_env or key_password_credential",
}


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration file."""

    file: str
    line: int | None  # 1-based
    key: str  # key path, e.g. "sources[0].path"; "" for the whole document
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigFileError(ConfigError):
    """A configuration file is invalid; `problems` lists every problem found, each with file, key and line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            text = str(problems[0])
        else:
            text = f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


def parse_config(
    text: str, file: str = "<string>", base_dir: Path | None = None, *, sources_required: bool = True
) -> Config:
    """Validate YAML text; relative paths resolve against `base_dir` (default: the working directory).
    `sources_required` False: a config for `edge-ocr serve`, which watches nothing."""
    base = (base_dir or Path.cwd()).absolute()
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                raise ConfigFileError(
                    [ConfigProblem(file, 1, "", "the file is empty; see config/edge-ocr.yaml")]
                )
            problems = [
                ConfigProblem(file, line, _key_text(key), msg) for line, key, msg in _duplicates(root)
            ]
            data = loader.construct_document(root)  # merges `<<: *anchor` keys into the nodes too
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise ConfigFileError(
                [ConfigProblem(file, line, "", f"not valid YAML: {exc.problem or exc}")]
            ) from None
        try:
            context = {"base_dir": base, "sources_required": sources_required}
            cfg = Config.model_validate(data, context=context)
        except ValidationError as exc:
            problems += [ConfigProblem(file, line, key, msg) for line, key, msg in _problems(exc, root)]
        if problems:
            raise ConfigFileError(sorted(problems, key=lambda p: p.line or 0))
        return cfg.with_derived_defaults()
    finally:
        loader.dispose()


def validate_file(path: Path, *, sources_required: bool = True) -> Config:
    """Read and validate a configuration file; raises ConfigError (a `ConfigFileError` for content)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path), path.absolute().parent, sources_required=sources_required)


def default_config(cwd: Path | None = None) -> Config:
    """The embedded default: ./inbox, state in ./var, no broker."""
    base = (cwd or Path.cwd()).absolute()
    src = FolderSource(name="inbox", type="folder", path=base / "inbox")
    return Config(state_dir=base / "var", sources=(src,)).with_derived_defaults()


def load_config(path: Path | None, *, sources_required: bool = True) -> Config:
    """The configuration in `path`, or the embedded default when `path` is None."""
    return default_config() if path is None else validate_file(path, sources_required=sources_required)


# --------------------------------------------------------------------------------------------- YAML nodes


def _duplicates(
    node: yaml.Node, key: tuple[Part | None, ...] = (), seen: set[int] | None = None
) -> Iterator[Any]:
    """(line, key path, message) for each key written twice in one mapping (merged keys may be overridden);
    a key that is not a scalar is None in the path."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: its anchor was checked where it was written
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, yaml.Node] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                continue
            name = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if name in first:
                line = first[name].start_mark.line + 1
                yield knode.start_mark.line + 1, (*key, name), f"duplicate key (first set on line {line})"
                continue
            first[name] = knode
            yield from _duplicates(vnode, (*key, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            yield from _duplicates(child, (*key, i), seen)


def _line(root: yaml.Node, parts: list[Part]) -> int:
    """The line of the key at `parts`; for a missing key, the line of the mapping it is missing from."""
    node, line = root, root.start_mark.line + 1
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not found:
                return node.start_mark.line + 1
            knode, node = found[-1]  # after merging, the last one wins
            line = knode.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _key_text(parts: Sequence[Part | None]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out


# --------------------------------------------------------------------------------------------- errors


def _problems(exc: ValidationError, root: yaml.Node) -> list[tuple[int, str, str]]:
    """(line, key path, message) for each problem; union members' errors on one key become one message."""
    by_key: dict[str, list[tuple[int, str, bool]]] = {}
    for err in exc.errors():
        loc, ctx = tuple(err["loc"]), err.get("ctx") or {}
        if err["type"] == "config_rules":  # a validator's problems, each at its own key
            found = [(loc + tuple(sub), message, False) for sub, message in ctx["problems"]]
        elif err["type"] == "union_tag_not_found":
            found = [(loc + ("type",), f"required key is missing (one of: {', '.join(SOURCE_TYPES)})", False)]
        elif err["type"] == "union_tag_invalid":
            found = [
                (
                    loc + ("type",),
                    f"unknown source type {ctx.get('tag')!r}; supported: {', '.join(SOURCE_TYPES)}",
                    False,
                )
            ]
        elif err["type"] == "too_short" and len(err["input"]) >= ctx.get("min_length", 0):
            continue  # counted after validation: its items' own errors say what is wrong
        else:
            found = [(loc, None, True)]
        for at, message, generic in found:
            parts, model, tp = _walk(at)
            if message is None:
                message, generic = _message(err, parts, model, tp)
            by_key.setdefault(_key_text(parts), []).append((_line(root, parts), message, generic))
    out = []
    for key, found_at_key in by_key.items():
        specific = [f for f in found_at_key if not f[2]]
        for line, message, _ in dict.fromkeys(specific or found_at_key):
            out.append((line, key, message))
    return out


def _walk(loc: tuple[Part, ...]) -> tuple[list[Part], type[BaseModel], Any]:
    """The key path of a pydantic location, the model holding its last key, and that key's annotation.

    A location also names union members (``'folder'``, ``'literal['auto']'``, ``'str'``): not keys.
    """
    parts: list[Part] = []
    model: type[BaseModel] = Config
    tp: Any = Config
    for item in loc:
        inner = _unwrap(tp)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
            parts.append(item if isinstance(item, str) else str(item))
            field = inner.model_fields.get(str(item))
            tp = field.annotation if field is not None else None
        elif typing.get_origin(inner) is tuple and isinstance(item, int):
            parts.append(item)
            tp = typing.get_args(inner)[0]
        elif _is_union(inner) and item in SOURCE_TYPES:
            tp = SOURCE_TYPES[str(item)]
        elif _is_union(inner) and item == "type":  # a source whose type is missing or unknown
            parts.append(item)
            tp = str
    return parts, model, tp


def _message(err: Any, parts: list[Part], model: type[BaseModel], tp: Any) -> tuple[str, bool]:
    """This project's wording of a pydantic error, and whether it only says the type is wrong."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required key is missing", False
    if kind == "extra_forbidden":
        return _unknown_key(str(parts[-1]), list(model.model_fields)), False
    if kind in ("greater_than_equal", "less_than_equal"):
        bound, word = (ctx["ge"], "least") if kind == "greater_than_equal" else (ctx["le"], "most")
        return f"must be at {word} {bound:g}, got {value:g}", False
    if kind == "too_short":
        if parts == ["sources"]:
            return "at least one source is needed", False
        return f"needs at least {ctx.get('min_length')} item(s)", False
    if kind == "string_pattern_mismatch":
        topic = "" if "regions" in parts else " (it is a topic level)"
        return f"{value!r} must be letters, digits, '_', '.', '-'{topic}", False
    if kind == "invalid_key":
        return f"keys must be names, got {value!r}", False
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), False
    expected = _expected(tp)
    scalar = value is not None and not isinstance(value, (str, list, dict))
    hint = " (quote it)" if scalar and ("a string" in expected or "a path" in expected) else ""
    return f"expected {expected}, got {_describe(value)}{hint}", True


def _unknown_key(name: str, known: list[str]) -> str:
    if name in _SECRET_KEYS:
        return (
            f"secrets are not accepted in the configuration file; put the {name.replace('_', ' ')} in a "
            f"file, an environment variable or a systemd credential and name it with {_SECRET_KEYS[name]}"
        )
    close = difflib.get_close_matches(name, known, n=1)
    return (
        f"unknown key (did you mean {close[0]!r}?)"
        if close
        else f"unknown key (known keys: {', '.join(known)})"
    )


def _unwrap(tp: Any) -> Any:
    """`tp` without Annotated metadata and without an optional None."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp) and type(None) in typing.get_args(tp) and len(typing.get_args(tp)) == 2:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _expected(tp: Any) -> str:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    choices = _choices(tp)
    if choices is not None:
        return "one of " + ", ".join(choices)
    if _is_union(tp):
        args = typing.get_args(tp)
        text = " or ".join(dict.fromkeys(_expected(a) for a in args if a is not type(None)))
        return f"{text} or null" if type(None) in args else text
    if typing.get_origin(tp) is tuple:
        return "a list"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping"
    return _TYPE_NAMES.get(tp, "a value")


def _choices(tp: Any) -> list[str] | None:
    """The allowed values of a Literal, bool or a union of them (plus null), or None if not a finite set."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) is Literal:
        return [str(a).lower() if isinstance(a, bool) else str(a) for a in typing.get_args(tp)]
    if tp is bool:
        return ["true", "false"]
    if tp is type(None):
        return ["null"]
    if _is_union(tp):
        out: list[str] = []
        for a in typing.get_args(tp):
            sub = _choices(a)
            if sub is None:
                return None
            out += sub
        return out
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
