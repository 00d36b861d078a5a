"""What every section of the configuration schema shares: the `Section` base (frozen, unknown keys
refused), path and name types, the strictness helpers and `Rules`, the problems found across keys."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
PASSWORD_KEYS = ("password_file", "password_env", "password_credential")


def default_device_id() -> str:
    """The host name, made safe for an MQTT topic level."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-.")
    return name or "edge-ocr"


def _not_empty(value: Any) -> Any:
    if value == "":
        raise PydanticCustomError("path_type", "expected a path")
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative to the configuration file's folder (the context's base_dir), like a shell would read it."""
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    return path if path.is_absolute() or base is None else (base / path).absolute()


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1 for a Literal; YAML's `true` is no QoS
        raise PydanticCustomError("literal_error", "expected a number")
    return value


ConfigPath = Annotated[Path, BeforeValidator(_not_empty), AfterValidator(_resolve)]
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]


class Rules:
    """Problems found by the rules across keys, raised together: each (key path inside the model, message).

    A source's (and TLS's) rules are checked by the validator of the collection holding it, not by its
    own: a source with problems of its own would otherwise hide the rules between sources (two sources
    watching one folder), and a TLS section those of its broker.
    """

    def __init__(self) -> None:
        self.problems: list[tuple[tuple[str | int, ...], str]] = []

    def add(self, key: str | tuple[str | int, ...], message: str) -> None:
        self.problems.append(((key,) if isinstance(key, str) else key, message))

    def extend(self, prefix: tuple[str | int, ...], other: Rules) -> None:
        self.problems += [(prefix + key, message) for key, message in other.problems]

    def raise_any(self) -> None:
        if self.problems:
            summary = "; ".join(f"{'.'.join(map(str, k))}: {m}" for k, m in self.problems)
            raise PydanticCustomError(
                "config_rules", "{summary}", {"summary": summary, "problems": self.problems}
            )


def _one_secret(rules: Rules, model: BaseModel, keys: tuple[str, ...], needs: str | None) -> None:
    """At most one of `keys` set; if one is and `needs` is given, that is what it lacks."""
    set_ = [k for k in keys if getattr(model, k) is not None]
    if len(set_) > 1:
        rules.add(set_[1], f"set only one of {', '.join(keys)}")
    if set_ and needs:
        rules.add(set_[0], needs)


class Section(BaseModel):
    """The common settings of every section: immutable (threads share them), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
