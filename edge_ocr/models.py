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


def default_models_dir() -> Path:
    """$EDGE_OCR_MODELS, else the repository's models/ beside the package (editable installs)."""
    env = os.environ.get("EDGE_OCR_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


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
        raise ModelError(f"model manifest {path} not found", remedy=REBUILD) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"model manifest {path} cannot be read: {exc}", remedy=REBUILD) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sets"), dict):
        raise ModelError(f"model manifest {path} has no `sets` mapping", remedy=REBUILD)
    return manifest


def set_entry(manifest: dict, models_dir: Path, model_set: str | None = None) -> tuple[str, dict]:
    """(name, entry) of the named model set, or of the manifest's default set."""
    if manifest.get("schema") != SCHEMA or not isinstance(manifest.get("sets"), dict):
        raise ModelError(
            f"model manifest in {models_dir} is of an older layout (schema {manifest.get('schema')})",
            remedy=REBUILD,
        )
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
