"""Secrets named by the configuration: read from a file, an environment variable or a systemd credential.

A secret never lives in the YAML (the schema refuses `password:`); the file names where it is, and it is
read only when needed, so a fleet config can be validated on a laptop that has none of the secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_ocr.errors import ConfigError
from edge_ocr.logs import remember_secret


def read_secret(what: str, *, file: Path | None, env: str | None, credential: str | None) -> str | None:
    """`_read_secret`, and the value remembered so that no log line ever shows it."""
    value = _read_secret(what, file=file, env=env, credential=credential)
    remember_secret(value)
    return value


def _read_secret(what: str, *, file: Path | None, env: str | None, credential: str | None) -> str | None:
    """Read a secret from a file, an environment variable or `$CREDENTIALS_DIRECTORY/<credential>`.

    At most one source is set (the schema checks this). A trailing newline is stripped. Returns None
    when no source is configured; raises ConfigError naming the source when it cannot be read.
    """
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {what}_file {file}: {exc.strerror or exc}") from exc
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(
                f"{what}_env names ${env}, which is not set", remedy=f"export {env} or use {what}_file"
            )
        return value
    if credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                f"{what}_credential is {credential!r} but $CREDENTIALS_DIRECTORY is not set",
                remedy=f"add `LoadCredential={credential}:/path/to/secret` to the unit, or use {what}_file",
            )
        path = Path(creds) / credential
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} credential {path}: {exc.strerror or exc}") from exc
    return None
