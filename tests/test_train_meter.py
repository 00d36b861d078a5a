"""`edge-ocr train meter` (issue 17): a short smoke run lowers its loss and exports a model the build's
INT8 tooling accepts; fine-tuning on 50 labelled crops of a style the renderer never draws makes the
model read that style better on crops it did not see. Full training (about an hour) is not run here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
render = pytest.importorskip("edge_ocr.train.render", reason="rendering needs the [train] extra (Pillow)")

from edge_ocr.cli import main  # noqa: E402
from edge_ocr.train import meter  # noqa: E402

DIGITS = "0123456789.-"


def report(out: str) -> dict:
    """The JSON report `train meter` prints first."""
    doc, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return doc


def reader(path: Path):  # -> MeterReader
    import onnxruntime as ort

    from edge_ocr.inference.meter import MeterReader

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return MeterReader(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))


def test_a_smoke_run_lowers_its_loss_and_exports_a_model_the_build_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_ocr.modelbuild import meter as shipped
    from edge_ocr.modelbuild.quantize import build_int8, compute_ranges, prepare

    out = tmp_path / "smoke.onnx"
    assert main(["train", "meter", "--out", str(out), "--steps", "200", "--eval-per-kind", "5"]) == 0
    doc = report(capsys.readouterr().out)
    first, last = doc["loss_first_last"]
    assert last < 0.8 * first, doc["loss_first_last"]  # 200 steps: about 3.7 -> 2.6 (the CTC plateau)
    assert doc["steps"] == 200 and set(doc["held_back"]) == set(render.KINDS)
    # the three phases ran: the second (drum-heavy, hard crops counted twice) refines the first's
    # export, the third (boxes drawn tight, cells spaced wider) the second's
    in_proportion = 200 * meter.RECIPE["refine"]["steps"] // meter.RECIPE["steps"]
    assert doc["refine_steps"] == in_proportion > 0 and (tmp_path / "smoke.base.onnx").is_file(), doc
    varied = 200 * meter.RECIPE["varied"]["steps"] // meter.RECIPE["steps"]
    assert doc["varied_steps"] == varied > 0 and (tmp_path / "smoke.refined.onnx").is_file(), doc
    assert out.stat().st_size < 2_000_000

    # The build's own INT8 path: prepare, ranges from rendered inputs, static QDQ, then onnxruntime runs it.
    rng = np.random.default_rng(1)
    from edge_ocr.inference.meter import prepare as to_input

    inputs = [to_input(render.render(rng).image)[None, None] for _ in range(8)]
    prepared = prepare(out.read_bytes(), shipped.RECIPE, tmp_path / "prepared.onnx")
    ranges = compute_ranges(prepared, shipped.RECIPE, inputs)
    int8 = tmp_path / "smoke.int8.onnx"
    build_int8(out.read_bytes(), shipped.RECIPE, ranges, int8)
    r = reader(int8)
    assert r.charset[:12] == tuple(DIGITS)
    crop = render.render(rng)
    r.read([crop.image], DIGITS)  # runs; a 200-step model need not read it right


def outline_crops(seed: int, n: int) -> list[tuple[np.ndarray, str]]:
    """Labelled crops of a style the renderer never draws and the shipped model reads badly (49 of the
    test's 80 exact, model 51ab8fe4): outlined digits, as embossed or stencilled numerals show, light on
    a dark plate, through the renderer's camera."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(4, 8))))
        font = cv2.FONT_HERSHEY_SIMPLEX
        (_, h), base = cv2.getTextSize(text, font, 2.0, 9)
        (w, _), _ = cv2.getTextSize(text, font, 2.0, 9)
        img = np.zeros((h + base + 24, w + 24, 3), np.uint8)
        img[:] = rng.integers(10, 70, 3)
        plate = tuple(int(v) for v in img[0, 0])
        cv2.putText(img, text, (12, h + 12), font, 2.0, tuple(int(v) for v in rng.integers(190, 256, 3)), 9,
                    cv2.LINE_AA)  # fmt: skip
        cv2.putText(img, text, (12, h + 12), font, 2.0, plate, 5, cv2.LINE_AA)
        out.append((render.camera(img, rng, 0.5), text))
    return out


def exact(path: Path, crops: list[tuple[np.ndarray, str]]) -> int:
    """How many of `crops` the model at `path` reads exactly."""
    r = reader(path)
    return sum(r.read([img], DIGITS)[0].text == text for img, text in crops)


def test_fine_tuning_on_50_crops_of_a_new_style_reads_that_style_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_ocr.modelbuild import meter as shipped

    folder = tmp_path / "crops"
    folder.mkdir()
    lines = []
    for i, (img, text) in enumerate(outline_crops(1, 50)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        lines.append(f"{i:03d}.png\t{text}")
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    unseen = outline_crops(2, 80)

    before = exact(shipped.MODEL, unseen)
    out = tmp_path / "tuned.onnx"
    assert main(["train", "meter", "--from", str(folder), "--out", str(out), "--eval-per-kind", "20"]) == 0
    doc = report(capsys.readouterr().out)
    after = exact(out, unseen)
    # Counted in crops, not a fraction a float sum can land a hair under: model 51ab8fe4 read 49 of 80
    # before and 61 after 400 steps on the 50
    assert after >= before + 10, (before, after)
    # ... without forgetting the rendered kinds: the same held-back crops read about as well as before
    from edge_ocr.train.meter import evaluate_onnx, held_back

    base = evaluate_onnx(shipped.MODEL, held_back(n=20))

    def pooled(f: dict) -> float:
        return sum(k["exact"] for k in f.values()) / len(f)

    assert pooled(doc["held_back"]) >= pooled(base) - 0.05, (doc["held_back"], base)


@pytest.mark.parametrize(("flag", "export"), [("--base", "base"), ("--refined", "refined")])
def test_a_phase_to_start_from_must_be_that_phases_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, export: str
) -> None:
    # A typo in --base or --refined must stop at once, not after the held-back sets or an hour of training.
    out, missing = tmp_path / "m.onnx", tmp_path / "no.onnx"
    assert main(["train", "meter", "--out", str(out), flag, str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and f"FILE.{export}.onnx" in err
    assert not out.exists()


def test_training_sees_both_neighbouring_values_of_a_turning_drum_and_how_far_it_turned() -> None:
    # The bench scores a turning drum's either neighbouring value as right; the second phase's loss
    # (turning_drums) needs both in each batch: the label and, for a turning drum, the value one step
    # away with how much of it the window shows; every other crop has only its label.
    from edge_ocr.train.crnn import CHARSET

    def texts(flat, lengths) -> list[str]:  # noqa: ANN001
        out, i = [], 0
        for n in lengths.tolist():
            out.append("".join(CHARSET[c - 1] for c in flat[i : i + n].tolist()))
            i += n
        return out

    _, targets, lengths, others, other_lengths, share = next(meter.batches(5, 48, 1.0, kinds={"drum": 1.0}))
    labels, seconds = texts(targets, lengths), texts(others, other_lengths)
    assert 10 <= int((share > 0).sum()) <= 40  # about half the drums are caught turning
    for label, second, shown in zip(labels, seconds, share.tolist(), strict=True):
        if shown == 0:
            assert second == label
            continue
        # the label is the nearer digit, so the other one shows less, and a drum this far is in motion
        assert render.MOTION <= shown <= 0.5, shown
        digits = label.replace(".", "")
        step = (int(digits) - int(second.replace(".", ""))) % 10 ** len(digits)  # 9999 -> 0000 is a step
        assert step in (1, 10 ** len(digits) - 1), (label, second)
        assert label.index(".") == second.index(".") if "." in label else "." not in second
    # displays never turn: their crops carry their label twice
    _, _, _, _, _, share = next(meter.batches(5, 48, 1.0, kinds={"seg7": 1.0}))
    assert not bool(share.any())


def test_a_turning_drum_trained_by_share_reads_as_far_as_it_turned() -> None:
    # "share" must make the model's probability of the other reading the share the window shows (what
    # gearing weighs), "either" must leave the model free to pick one, "nearest" must push to the label.
    import torch

    share = torch.tensor([0.3])
    best = {}
    for turning in meter.TURNING:
        p = torch.linspace(0.01, 0.99, 99)  # the model's probability of the other reading
        loss = meter.turning_loss(-torch.log(1 - p), -torch.log(p), share.expand(99), turning)
        best[turning] = float(p[int(loss.argmin())])
    assert abs(best["share"] - 0.3) < 0.011
    assert best["nearest"] == pytest.approx(0.01)
    # either reading is as good as the other: the loss is flat
    either = meter.turning_loss(-torch.log(1 - p), -torch.log(p), share.expand(99), "either")
    assert float(either.max() - either.min()) < 1e-5
    with pytest.raises(ValueError, match="turning-drum loss"):
        meter.train(1, turning="rounded")


def test_the_shipped_card_states_the_recipe_the_code_trains_with() -> None:
    # `train meter --out F` reproduces the shipped model only if the code's recipe is the one the card
    # says trained it: a recipe edited for an experiment that did not ship must not stay behind.
    from edge_ocr.modelbuild import meter as shipped

    assert shipped.card()["recipe"] == json.loads(json.dumps(meter.RECIPE))
