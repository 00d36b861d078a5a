"""The training folder: rejected meter crops kept pending, labelled when the display is known not to have
changed or on cmd/set_value, bounded, and harmless on a disk that cannot be written."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ocr.plausibility import MeterMemory, NumericRules
from edge_ocr.regions import Region, RegionTracker
from edge_ocr.trainingset import LABELS, PENDING, TrainingFolder, label_like
from edge_ocr.types import OcrResult, TextLine

BOX = (10, 5, 60, 20)


class ScriptedEngine:
    """Returns the next scripted text on each read (the real models are covered in test_regions and
    test_meter_model); keeps what it was given."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.given: list[np.ndarray] = []

    def _result(self, image: np.ndarray, charset: str | None = None, upright: bool = False) -> OcrResult:
        self.given.append(image.copy())
        text = self.texts.pop(0)
        h, w = image.shape[:2]
        box = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
        return OcrResult(lines=(TextLine(text, 0.95, box),), width=w, height=h)

    run = run_line = run_meter = _result


def frame(k: int) -> np.ndarray:
    """A textured frame whose level differs per k, so change detection reads every one."""
    rng = np.random.default_rng(k)
    base = np.full((40, 90, 3), 20 + 25 * k, np.int16)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def crop_of(image: np.ndarray) -> np.ndarray:
    x, y, w, h = BOX
    return image[y : y + h, x : x + w]


def tracker(
    tmp_path: Path,
    texts: list[str],
    rules: NumericRules | None = None,
    training: TrainingFolder | None = None,
) -> tuple[RegionTracker, TrainingFolder]:
    rules = rules or NumericRules(monotonic="increasing", carry=False, max_jump=5)
    # ghosts suppressed before reading: the folder must still keep the crop as cut
    region = Region("meter", box=BOX, charset="0123456789.", numeric=rules, suppress_ghosts=True)
    folder = training or TrainingFolder(tmp_path / "training" / "cam")
    t = RegionTracker(
        ScriptedEngine(texts), [region], debounce_frames=1, memory=MeterMemory(tmp_path / "m.json"),
        training=folder,
    )  # fmt: skip
    return t, folder


def rows(folder: Path, index: str) -> list[list[str]]:
    path = folder / index
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line and not line.startswith("#")]


def feed(t: RegionTracker, first: int, count: int) -> list[tuple[str, bool, str | None]]:
    out = []
    for k in range(first, first + count):
        out += [(v.text, v.valid, v.reason) for v in t.update(frame(k), at=1_700_000_000.0 + k).values]
    return out


# ------------------------------------------------------------------ through the tracker


def test_rejected_crops_are_pending_until_the_same_value_labels_them(tmp_path: Path) -> None:
    t, folder = tracker(tmp_path, ["04867.4", "04861.4", "09867.4", "04867.4"])
    published = feed(t, 0, 3)
    assert [p[1] for p in published] == [True, False, False]
    pending = rows(folder.root, PENDING)
    assert [(r[1], r[2]) for r in pending] == [("04861.4", "monotonic"), ("09867.4", "max_jump")]
    assert not rows(folder.root, LABELS)
    # the crop as cut from the frame (not ghost-suppressed), which is what the reader was given
    saved = cv2.imread(str(folder.root / pending[0][0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, crop_of(frame(1)))

    assert feed(t, 3, 1) == [("04867.4", True, None)]  # the display never changed: those showed this
    assert rows(folder.root, PENDING) == []
    assert rows(folder.root, LABELS) == [[pending[0][0], "04867.4"], [pending[1][0], "04867.4"]]


def test_a_different_value_next_leaves_them_pending(tmp_path: Path) -> None:
    t, folder = tracker(tmp_path, ["04867.4", "09867.4", "04867.9", "09999.9", "04867.9"])
    assert [p[1] for p in feed(t, 0, 3)] == [True, False, True]  # the meter moved on in between
    assert not rows(folder.root, LABELS)
    (old,) = rows(folder.root, PENDING)
    assert old[1:3] == ["09867.4", "max_jump"]
    # a later run that ends on the same value labels its own crops only
    assert [p[1] for p in feed(t, 3, 2)] == [False, True]
    assert rows(folder.root, PENDING) == [old]
    ((name, label),) = rows(folder.root, LABELS)
    assert label == "04867.9" and name != old[0]


def test_set_value_labels_the_latest_crop_formatted_like_the_display(tmp_path: Path) -> None:
    t, folder = tracker(tmp_path, ["04867.4", "04867.5"])
    feed(t, 0, 2)
    assert t.set_value("meter", 4868.1) == pytest.approx(4867.5)
    ((name, label),) = rows(folder.root, LABELS)
    assert label == "04868.1"
    assert np.array_equal(cv2.imread(str(folder.root / name), cv2.IMREAD_UNCHANGED), crop_of(frame(1)))


def test_set_value_with_fixed_decimals_writes_the_digits_the_display_shows(tmp_path: Path) -> None:
    t, folder = tracker(tmp_path, ["048674"], NumericRules(decimals=1), TrainingFolder(tmp_path / "tf"))
    feed(t, 0, 1)
    t.set_value("meter", 4868.1)
    assert [r[1] for r in rows(folder.root, LABELS)] == ["048681"]


@pytest.mark.parametrize(
    ("value", "template", "decimals", "label"),
    [
        (4868.1, "04867.4", None, "04868.1"),
        (4868.1, "4867.4", None, "4868.1"),
        (4868.1, "04867.4", 3, "04868.100"),
        (4868.1, "048674", 1, "048681"),
        (9.96, "09.9", None, "10.0"),
        (123, "00100", None, "00123"),
        (-12.3, "-0001.2", None, "-0012.3"),
        (1.5, "0001,2", None, "0001,5"),
        (5.25, "", 2, "5.25"),
    ],
)
def test_label_like(value: float, template: str, decimals: int | None, label: str) -> None:
    assert label_like(value, template, decimals) == label


# ------------------------------------------------------------------ the folder itself


def test_the_bound_deletes_the_oldest_crops_and_their_lines(tmp_path: Path) -> None:
    folder = TrainingFolder(tmp_path / "tf", max_files=3)
    crop = crop_of(frame(0))
    paths = [folder.labelled("meter", crop, f"0000{k}", at=1_700_000_000.0 + k) for k in range(3)]
    paths += [folder.pending("meter", crop, "00009", "monotonic", at=1_700_000_010.0 + k) for k in range(2)]
    assert all(p is not None for p in paths)
    kept = sorted(p.name for p in folder.root.glob("*.png"))
    assert kept == sorted(p.name for p in paths[2:] if p)
    assert rows(folder.root, LABELS) == [[paths[2].name, "00002"]]  # type: ignore[union-attr]
    assert len(rows(folder.root, PENDING)) == 2

    size = paths[-1].stat().st_size  # type: ignore[union-attr]
    small = TrainingFolder(tmp_path / "tf", max_files=100, max_bytes=2 * size + size // 2)
    small.labelled("meter", crop, "00005", at=1_700_000_020.0)
    assert len(list(folder.root.glob("*.png"))) == 2
    assert [r[1] for r in rows(folder.root, LABELS)] == ["00005"]


def test_an_unwritable_folder_drops_crops_warns_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests run as root, which ignores permissions: a folder under a regular file cannot be made.
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    folder = TrainingFolder(blocker / "training" / "cam")
    t, _ = tracker(tmp_path, ["04867.4", "09867.4", "09967.4", "04867.4"], training=folder)
    with caplog.at_level(logging.INFO, logger="edge_ocr.trainingset"):
        assert [p[1] for p in feed(t, 0, 4)] == [True, False, False, True]  # nothing raised
        assert t.set_value("meter", 4867.4) == pytest.approx(4867.4)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot be written" in warnings[0].getMessage()

        blocker.unlink()  # the disk is back
        assert folder.labelled("meter", crop_of(frame(0)), "04867.4") is not None
        assert any("written again" in r.getMessage() for r in caplog.records)
        shutil.rmtree(folder.root)  # and gone again, between two writes
        assert folder.pending("meter", crop_of(frame(1)), "09867.4", "max_jump", 1_700_000_100.0)
    assert len(rows(folder.root, PENDING)) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_labels_load_for_fine_tuning(tmp_path: Path) -> None:
    meter = pytest.importorskip("edge_ocr.train.meter")
    t, folder = tracker(tmp_path, ["04867.4", "09867.4", "04867.4"])
    feed(t, 0, 3)
    t.set_value("meter", 4868.1)
    loaded = meter.load_folder(folder.root)
    assert [item.text for item in loaded] == ["04867.4", "04868.1"]
    assert all(item.image.shape == (BOX[3], BOX[2], 3) for item in loaded)
