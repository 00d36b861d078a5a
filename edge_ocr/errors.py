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
