"""The model manifest and the sha256 check that guards every model file before it is loaded.

`models/manifest.yaml` (written by `edge_ocr.modelbuild`) lists named model sets (`ppocrv6-small`,
the default, and `ppocrv4-mobile`), per set and role (det, rec, cls) the variants built (fp32, int8)
with their files and sha256, and whether INT8 passed the build's accuracy gate (`int8_allowed`).
Nothing here downloads or builds anything: a missing or altered file is refused with the command
that rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_ocr.errors import ModelError

# libyaml's loader reads the manifest in 3.5 ms, the pure-Python one in 30.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ROLES = ("det", "rec", "cls")
SCHEMA = 2
REBUILD = "run `edge-ocr models build` to rebuild the model files"


@dataclass(frozen=True)
class ModelsLocation:
    """Where the models folder is, and why there: `edge-ocr models path` prints both."""

    path: Path
    why: str


def _checkout_models() -> Path | None:
    """The source checkout's models/ when running from one (editable install, PYTHONPATH): never a
    folder beside site-packages, where a plain install would otherwise look and write."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "models" / "manifest.yaml").is_file():
        return root / "models"
    return None


def locate_models_dir(explicit: Path | None = None, origin: str = "--models") -> ModelsLocation:
    """The models folder: `explicit` (--models or engine.models_dir), else $EDGE_OCR_MODELS, else the
    source checkout's models/, else a data directory: $STATE_DIRECTORY/models under systemd
    (/var/lib/edge-ocr/models with the unit's StateDirectory=edge-ocr), else
    $XDG_DATA_HOME/edge-ocr/models (~/.local/share/edge-ocr/models)."""
    if explicit is not None:
        return ModelsLocation(Path(explicit), f"given by {origin}")
    env = os.environ.get("EDGE_OCR_MODELS")
    if env:
        return ModelsLocation(Path(env), "from $EDGE_OCR_MODELS")
    checkout = _checkout_models()
    if checkout is not None:
        return ModelsLocation(checkout, "the source checkout's models/ (running from a checkout)")
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return ModelsLocation(Path(state.split(":")[0]) / "models", "the service's $STATE_DIRECTORY")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return ModelsLocation(Path(data) / "edge-ocr" / "models", "the user's data directory ($XDG_DATA_HOME)")


def default_models_dir() -> Path:
    return locate_models_dir().path


@dataclass(frozen=True)
class ModelFile:
    role: str
    variant: str
    path: Path
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(models_dir: Path) -> dict:
    path = models_dir / "manifest.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = yaml.load(fh, Loader=_LOADER)  # noqa: S506 (a safe loader)
    except FileNotFoundError as exc:
        raise ModelError(
            f"no models in {models_dir} (no manifest.yaml there)",
            remedy=f"build them with `edge-ocr models build --models {models_dir}` (or without --models "
            "for the default folder; `edge-ocr models path` tells which folder that is)",
        ) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"model manifest {path} cannot be read: {exc}", remedy=REBUILD) from exc
    if not isinstance(manifest, dict):
        raise ModelError(f"model manifest {path} is not a mapping", remedy=REBUILD)
    if manifest.get("schema") != SCHEMA or not isinstance(manifest.get("sets"), dict):
        # A manifest from before model sets (schema 1) after an upgrade: say so, not "malformed".
        raise ModelError(
            f"model manifest {path} is of an older layout (schema {manifest.get('schema')}, this edge-ocr "
            f"reads schema {SCHEMA})",
            remedy=REBUILD,
        )
    return manifest


def set_entry(manifest: dict, models_dir: Path, model_set: str | None = None) -> tuple[str, dict]:
    """(name, entry) of the named model set, or of the manifest's default set (a manifest as
    load_manifest returns it: the layout is checked there)."""
    name = model_set or manifest.get("default_set")
    entry = manifest["sets"].get(name)
    if not isinstance(entry, dict):
        raise ModelError(
            f"model set {name!r} is not in {models_dir} (built: {', '.join(manifest['sets']) or 'none'})",
            remedy="choose one of those, or run `edge-ocr models build` to build every set",
        )
    return str(name), entry


def role_entry(manifest: dict, models_dir: Path, role: str, model_set: str | None = None) -> dict:
    name, entry = set_entry(manifest, models_dir, model_set)
    role_spec = (entry.get("models") or {}).get(role)
    if not isinstance(role_spec, dict):
        raise ModelError(f"model set {name!r} in {models_dir} has no entry for role {role!r}", remedy=REBUILD)
    return role_spec


def resolve(
    models_dir: Path,
    role: str,
    variant: str = "fp32",
    manifest: dict | None = None,
    model_set: str | None = None,
) -> ModelFile:
    """Find a role's file of one variant in a model set (default: the manifest's) and verify its sha256.

    `manifest`: load_manifest(models_dir) already read, when several roles are resolved at once."""
    manifest = manifest if manifest is not None else load_manifest(models_dir)
    variants = role_entry(manifest, models_dir, role, model_set).get("variants") or {}
    if variant not in variants:
        raise ModelError(
            f"model role {role!r} has no variant {variant!r} (available: {', '.join(variants) or 'none'})"
        )
    spec = variants[variant]
    path = models_dir / spec["file"]
    expected = str(spec["sha256"]).lower()
    if not path.is_file():
        raise ModelError(f"model file {path} is missing", remedy=REBUILD)
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"model file {path} is altered: sha256 {actual[:16]}… does not match the manifest's "
            f"{expected[:16]}…; refusing to load it",
            remedy=REBUILD,
        )
    return ModelFile(role=role, variant=variant, path=path, sha256=actual)
