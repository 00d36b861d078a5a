"""Writing a configuration file back (the page's Save, `PUT /api/config`), and showing it with its secrets
masked (`GET /api/config`).

- `masked_document(path)`: the file's content as plain data, every secret masked with `***`: the keys the
  schema marks `Secret` (the MQTT user name) and any value that is a secret read at run time or a URL's
  password (`logs.redact`). The file never holds a password, token or credential (the schema refuses
  them), but it is masked all the same should one ever be there.
- `save(path, data)`: the new content is *merged* into the file as ruamel.yaml's round-trip loader read it,
  so the user's comments, key order, quoting and flow lists stay where they were; keys the new content
  leaves out are removed, list items with a `name` (sources, regions) are matched by name. A `***` sent
  back (the masked value the page was shown) keeps the value in the file. Keys merged in by `<<: *anchor`
  stay merged while unchanged, and a change to one user of an anchor is made on a copy at that place
  (the anchor's other users keep what they said). The merged text is validated
  by `parse_config`, the loader of `edge-ocr config validate`, before a byte is written; then the old file
  is kept as `<file>.bak` and the new one replaces it atomically (temp file, fsync, rename, fsync of the
  folder), with the old file's mode.

One writer at a time is the caller's business (the web layer holds a lock over save and reload).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from edge_ocr.config.load import ConfigFileError, ConfigProblem, parse_config
from edge_ocr.config.schema import REDACTED, SOURCE_TYPES, Config, Secret
from edge_ocr.errors import ConfigError
from edge_ocr.logs import redact

MASK = REDACTED


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


# --------------------------------------------------------------------------------------------- reading


def masked_document(path: Path) -> dict[str, Any]:
    """The file's document as JSON-able data, secrets masked; raises ConfigError if it cannot be read."""
    doc, _, _ = _load(_read_text(path), str(path))
    data = _plain(doc)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file is not a mapping of keys")
    _mask(Config, data)
    return data  # type: ignore[no-any-return]


def _plain(node: Any) -> Any:
    """ruamel's nodes as plain dicts, lists and scalars (strings masked by `logs.redact`)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return redact(str(node))
    return redact(str(node))  # dates and other YAML scalars the schema refuses anyway


def _mask(model: type[BaseModel], data: dict[str, Any]) -> None:
    """Mask the values of fields marked `Secret`, walking the schema alongside the data."""
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None or value is None:
            continue
        if any(isinstance(m, Secret) for m in info.metadata):
            data[key] = MASK
            continue
        for sub_model, sub in _children(info.annotation, value):
            _mask(sub_model, sub)


def _children(annotation: Any, value: Any) -> list[tuple[type[BaseModel], dict[str, Any]]]:
    """The (model, mapping) pairs below a field: a section, or the items of a list of sections (a source
    picks its model by its `type`)."""
    tp = _unwrap(annotation)
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        return [(tp, value)]
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        item_tp = _unwrap(typing.get_args(tp)[0])
        out = []
        for item in value:
            if not isinstance(item, dict):
                continue
            model = item_tp if isinstance(item_tp, type) and issubclass(item_tp, BaseModel) else None
            model = model or SOURCE_TYPES.get(str(item.get("type")))
            if model is not None:
                out.append((model, item))
        return out
    return []


def _unwrap(tp: Any) -> Any:
    """`tp` without Annotated and without an optional None."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
            continue
        return tp


# --------------------------------------------------------------------------------------------- writing


def save(path: Path, data: dict[str, Any], *, sources_required: bool = True) -> tuple[Config, bool]:
    """Merge `data` into the file at `path`, validate, keep `<file>.bak`, write atomically; returns the new
    Config and whether the file changed. Raises `ConfigFileError` (every problem, key by key) with the
    file left byte-identical."""
    path = Path(os.path.realpath(path))  # a symlinked config stays a symlink: its target is written
    old_text = _read_text(path)
    doc, indent, offset = _load(old_text, str(path))
    if not isinstance(doc, CommentedMap):
        doc = CommentedMap()
    problems: list[ConfigProblem] = []
    merged = _merge(doc, data, "", problems, str(path), _shared(doc))
    if problems:
        raise ConfigFileError(problems)
    text = _dump(merged, indent, offset)
    cfg = parse_config(text, str(path), path.parent, sources_required=sources_required)
    if text == old_text:
        return cfg, False
    _write(backup_path(path), old_text.encode("utf-8"), path)
    _write(path, text.encode("utf-8"), path)
    return cfg, True


def restore_backup(path: Path) -> None:
    """Put `<file>.bak` back (a saved file the daemon then refused to run)."""
    path = Path(os.path.realpath(path))
    _write(path, backup_path(path).read_bytes(), path)


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from exc


def _yaml(sequence: int = 2, offset: int = 0) -> YAML:
    """A round-trip YAML with the file's indentation: `sequence` is where a list item's keys start, `offset`
    where its dash is (`  - name: x`: 4 and 2; mappings then indent by 2)."""
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a user's long line
    y.indent(mapping=max(2, sequence - offset), sequence=sequence, offset=offset)
    # `key: null` stays `null` (round-trip would write an empty value, which reads as null too but is
    # not what the file said).
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return y


def _load(text: str, file: str) -> tuple[Any, int, int]:
    """The round-trip document and the file's indentation (mapping indent, dash offset)."""
    try:
        if not text.strip():
            return CommentedMap(), 2, 0
        _, indent, offset = load_yaml_guess_indent(text)
        doc = _yaml(indent or 2, offset or 0).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigFileError([ConfigProblem(file, line, "", f"not valid YAML: {exc}")]) from None
    return doc, indent or 2, offset or 0


def _dump(doc: Any, indent: int, offset: int) -> str:
    out = io.StringIO()
    _yaml(indent, offset).dump(doc, out)
    return out.getvalue()


def _key(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _shared(doc: Any) -> set[int]:
    """The ids of mappings and lists the document reaches more than once (an anchor and its aliases, or
    `<<:` merge keys)."""
    seen: set[int] = set()
    shared: set[int] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, (CommentedMap, CommentedSeq)):
            return
        if id(node) in seen:
            shared.add(id(node))
            return
        seen.add(id(node))
        for child in node.values() if isinstance(node, CommentedMap) else node:
            walk(child)

    walk(doc)
    return shared


def _merge(old: Any, new: Any, path: str, problems: list[ConfigProblem], file: str,
           shared: set[int]) -> Any:  # fmt: skip
    """`new` as the node to store where `old` was: mappings and lists are updated in place (their comments
    and layout stay), an unchanged scalar keeps its old node (its quoting and number format), a `***`
    keeps the old value. A node reached from several places (an anchor) is changed as a copy at this
    place only: the other places keep what they said."""
    if isinstance(new, str) and MASK in new:
        if isinstance(old, str) and (new == MASK or redact(str(old)) == new):
            return old  # a value shown masked (a secret, or a path containing one) and sent back
        if new == MASK:
            problems.append(ConfigProblem(file, None, path, "'***' stands for a masked secret, and the file "
                                          "has no value here to keep; send the value itself"))  # fmt: skip
            return old
    if isinstance(old, (CommentedMap, CommentedSeq)) and id(old) in shared:
        copy_ = copy.deepcopy(old)
        if getattr(copy_, "anchor", None) is not None:
            copy_.anchor.value = None  # one anchor of that name: the original keeps it
        result = _merge(copy_, new, path, problems, file, set())
        return old if _plain(result) == _plain(old) else result
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        for k in [k for k in old if k not in new]:
            with contextlib.suppress(KeyError):  # a key merged in (`<<:`) is not this mapping's own
                del old[k]
        for k, v in new.items():
            sub = _key(path, k)
            if k not in old:
                old[k] = _fresh(v, problems, sub, file)
                continue
            before = _inherited(old, k)
            merged = _merge(before, v, sub, problems, file, shared)
            if merged is not before:  # unchanged keys (merged-in ones too) are not written again
                old[k] = merged
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        by_name = {
            item["name"]: item for item in old if isinstance(item, CommentedMap) and "name" in item
        }
        named = all(isinstance(item, dict) and "name" in item for item in new)
        items = []
        for i, item in enumerate(new):
            before = by_name.get(item["name"]) if named else (old[i] if i < len(old) else None)
            sub = _key(path, i)
            items.append(_merge(before, item, sub, problems, file, shared) if before is not None
                         else _fresh(item, problems, sub, file))  # fmt: skip
        for i, item in enumerate(items):
            if i < len(old):
                if old[i] is not item:
                    old[i] = item
            else:
                old.append(item)
        while len(old) > len(items):
            del old[len(old) - 1]
        return old
    if _same_scalar(old, new):
        return old
    return _fresh(new, problems, path, file)


def _inherited(node: CommentedMap, key: Any) -> Any:
    """`node[key]`; for a key merged in by `<<:`, its value now in the mapping it comes from (ruamel keeps
    a copy taken at load time, and that mapping may have been changed by this save)."""
    if key in getattr(node, "_ok", (key,)):
        return node[key]
    for source in getattr(node, "merge", ()):  # ruamel 0.19: the merged mappings, first wins
        if isinstance(source, tuple):  # older ruamel: (position, mapping)
            source = source[1]
        if key in source:
            return source[key]
    return node[key]


def _same_scalar(old: Any, new: Any) -> bool:
    """Equal and of one kind (YAML's `1`, `1.0` and `true` are three different values to the schema)."""
    if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
        return False
    kind = (bool, int, float, str, type(None))
    return next((k for k in kind if isinstance(old, k)), None) is next(
        (k for k in kind if isinstance(new, k)), None
    ) and old == new


def _fresh(value: Any, problems: list[ConfigProblem], path: str, file: str) -> Any:
    """A new node: block mappings, and short lists of scalars in flow style (`box: [10, 20, 30, 40]`)."""
    if isinstance(value, str) and value == MASK:
        problems.append(ConfigProblem(file, None, path, "'***' stands for a masked secret, and the file has "
                                      "no value here to keep; send the value itself"))  # fmt: skip
        return value
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _fresh(v, problems, _key(path, k), file)
        return m
    if isinstance(value, list):
        s = CommentedSeq(_fresh(v, problems, _key(path, i), file) for i, v in enumerate(value))
        if all(not isinstance(v, (dict, list)) for v in value) or all(
            isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) for v in value
        ):
            s.fa.set_flow_style()
        return s
    return value


def _write(target: Path, data: bytes, like: Path) -> None:
    """Atomically: a temp file beside `target`, fsynced, renamed over it, and the folder fsynced; the mode
    of `like` (the config file) is kept."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        mode = stat.S_IMODE(like.stat().st_mode)
    except OSError:
        mode = 0o644
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}",
                          remedy="check that the folder of the configuration file is writable by the "
                          "daemon's user and has free space") from exc  # fmt: skip
