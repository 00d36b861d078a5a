"""The one exception hierarchy of edge-ocr.

Every error carries an exit code and a remedy: a sentence telling the user what to do. Only the CLI
turns errors into exit codes; library code raises.
"""

from __future__ import annotations


class EdgeOcrError(Exception):
    """Base of every error edge-ocr raises on purpose."""

    exit_code = 1
    remedy = ""

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        if remedy is not None:
            self.remedy = remedy

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} ({self.remedy})" if self.remedy else msg


class ConfigError(EdgeOcrError):
    """The configuration file or a command-line option is invalid."""

    exit_code = 2
    remedy = "fix the configuration and try again"


class ModelError(EdgeOcrError):
    """A model file is missing, altered or unusable."""

    exit_code = 3
    remedy = "rebuild the models with `edge-ocr models build`"


class InputError(EdgeOcrError):
    """An input image cannot be used (corrupt, truncated, empty, not an image, too large)."""

    exit_code = 4


class ImageTooLargeError(InputError):
    """The image header announces more pixels than allowed (decompression-bomb guard)."""

    remedy = "raise `max_pixels` if the image is legitimate"


class InferenceError(EdgeOcrError):
    """onnxruntime failed while running a model."""

    exit_code = 5


class SourceError(EdgeOcrError):
    """An image source (folder, camera) cannot be used."""

    exit_code = 6


class PublishError(EdgeOcrError):
    """Results cannot be published or stored."""

    exit_code = 7


class StoreError(EdgeOcrError):
    """The fleet's database (PostgreSQL, `edge-ocr ingest`) cannot be reached or refuses a write."""

    exit_code = 8
    remedy = "check that PostgreSQL runs and that --dsn names a database this user may create tables in"


# The extra that provides each optional top-level module (pyproject.toml's optional-dependencies).
EXTRA_OF_MODULE = {
    "fastapi": "web",
    "starlette": "web",
    "uvicorn": "web",
    "multipart": "web",
    "python_multipart": "web",
    "prometheus_client": "web",
    "ruamel": "web",
    "paho": "daemon",
    "psycopg": "fleet",
    "watchdog": "daemon",
    "systemd": "systemd",
    "onnx": "build",
    "sympy": "build",
    "rapidfuzz": "bench",
    "torch": "train",
    "PIL": "train",
}


class MissingExtraError(ConfigError):
    """A command or a configured option needs an optional extra of edge-ocr that is not installed.

    A ConfigError (exit code 2), as the web extra's message was before: the setup asked for too little."""

    def __init__(self, what: str, extra: str, module: str | None = None, *, alternative: str = "") -> None:
        missing = f" ({module} is not installed)" if module else ""
        remedy = f"pip install 'edge-ocr[{extra}]'" + (f", {alternative}" if alternative else "")
        super().__init__(f"{what} needs the {extra} extra{missing}", remedy=remedy)
        self.extra = extra
        self.module = module


def missing_extra(what: str, exc: ImportError, *, alternative: str = "") -> MissingExtraError | None:
    """The MissingExtraError for an ImportError of an optional module (None: not one of ours to explain)."""
    name = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    return MissingExtraError(what, extra, name, alternative=alternative) if extra else None


def require_extra(what: str, extra: str, *modules: str) -> None:
    """Import `modules` now; MissingExtraError naming `extra` when one is not installed. For commands
    that would otherwise fail late (a worker thread's traceback, after minutes of work)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MissingExtraError(what, extra, name) from exc
