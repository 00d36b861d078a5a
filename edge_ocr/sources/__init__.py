"""Image sources: where the daemon's input comes from (the hot folder; the camera later)."""

from __future__ import annotations

from edge_ocr.sources.folder import DEFAULT_INCLUDE, FolderItem, FolderSettings, FolderSource

__all__ = ["DEFAULT_INCLUDE", "FolderItem", "FolderSettings", "FolderSource"]
