"""The meter renderer (edge_ocr/train/render.py): deterministic per seed, every kind drawn with a label
a perfect reader would give, and geared drums whose label is a value the counter really passes."""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np
import pytest

pytest.importorskip("PIL", reason="the renderer needs the [train] extra (Pillow)")

from edge_ocr.train import fonts, render  # noqa: E402


def digest(crops: list[render.Crop]) -> str:
    h = hashlib.sha256()
    for c in crops:
        h.update(c.image.tobytes())
        h.update(repr(c.image.shape).encode())
        h.update(c.text.encode())
    return h.hexdigest()


def test_the_same_seed_gives_the_same_crops_and_another_seed_others() -> None:
    a = render.render_set(11, 40)
    assert digest(a) == digest(render.render_set(11, 40))
    assert digest(a) != digest(render.render_set(12, 40))


@pytest.mark.parametrize("kind", render.KINDS)
def test_every_kind_draws_labelled_crops(kind: str) -> None:
    crops = render.render_set(3, 25, kind)
    for c in crops:
        assert c.kind == kind
        assert c.image.dtype == np.uint8 and c.image.ndim == 3 and c.image.shape[2] == 3
        assert c.image.shape[0] >= 6 and c.image.shape[1] >= 8
        assert c.text and set(c.text) <= set("0123456789.-"), c.text
        assert not c.text.startswith(".") and ".." not in c.text
        # the picture is not blank: a crop with digits has contrast
        assert float(c.image.std()) > 3.0
    assert len({c.text for c in crops}) > 20  # readings vary


def ink_rows(mask: np.ndarray) -> int:
    rows = np.flatnonzero(mask.max(axis=1) > 0.5)
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


@pytest.mark.parametrize(
    "face",
    [
        fonts.PILLOW_DEFAULT,
        fonts.hershey_face(cv2.FONT_HERSHEY_SIMPLEX, 1.5),
        fonts.hershey_face(cv2.FONT_HERSHEY_TRIPLEX, 4.0),
    ],
)
def test_counters_faces_draw_ten_distinct_digits_the_size_a_truetype_face_does(face: str) -> None:
    # A drum's cell is sized for a TrueType digit at the size asked for: a face drawing its digits far
    # smaller or larger would give counters that are all margin, or digits cut by their cell.
    dejavu = next(f for f in fonts._faces("DejaVuSans.ttf", str(fonts.DEJAVU_DIR)))
    masks = [fonts._draw_text(d, face, 80) for d in "0123456789"]
    for d, m in zip("0123456789", masks, strict=True):
        assert m.dtype == np.float32 and float(m.min()) >= 0.0 and float(m.max()) <= 1.0
        assert 0.85 < ink_rows(m) / ink_rows(fonts._draw_text(d, dejavu, 80)) < 1.2, d
    shapes = {cv2.resize(m, (12, 16)).round(1).tobytes() for m in masks}
    assert len(shapes) == 10


def test_counters_are_printed_in_the_font_packages_upright_lining_faces() -> None:
    # scripts/test installs every package: without one, the recipe would draw other crops than the
    # committed model was trained on, and `train meter` refuses to start (fonts.require_fonts).
    assert fonts.missing_face_packages() == []
    families = fonts.package_faces()
    assert len(families) == len(fonts.FACE_PACKAGES)
    kept = {f for family in families for f in family}
    # old-style figures (a 3, 4, 5, 7 or 9 hanging below the line) and italics are never drawn
    adf = "/usr/share/fonts/truetype/adf/"
    assert not fonts.lining(adf + "AccanthisADFStd-Regular.otf")
    assert fonts.lining(adf + "AccanthisADFStdNo3-Regular.otf")
    assert "/usr/share/fonts/truetype/gentium/Gentium-I.ttf" not in kept
    assert not any("Italic" in f or "Oblique" in f for f in kept)
    for face in sorted(kept)[::9]:  # every digit drawn, and drawn differently
        masks = [fonts._draw_text(d, face, 64) for d in "0123456789"]
        assert len({cv2.resize(m, (12, 16)).round(1).tobytes() for m in masks}) == 10, face
    # and counters are drawn in them: a face is one of the families' about two in five times
    drawn = [render._drum_face(np.random.default_rng(s)) for s in range(200)]
    assert 50 < sum(f in kept for f in drawn) < 110
    assert len({f for f in drawn if f in kept}) > 40


def test_drums_are_geared_and_labelled_by_the_nearest_digit() -> None:
    # 01239.6: the last drum 60% from 9 to 0, the tens drum 60% from 3 to 4, the rest still
    pos = render._drum_positions(1239.6, 5)
    assert pos[:3] == pytest.approx([0, 1, 2])
    assert pos[3] == pytest.approx(3.6)
    assert pos[4] == pytest.approx(9.6)
    # 01235.5: only the last drum is moving
    pos = render._drum_positions(1235.5, 5)
    assert pos[3] == pytest.approx(3.0) and pos[4] == pytest.approx(5.5)
    # a carry through two drums: 00999.3 turns the tens and hundreds with the units
    pos = render._drum_positions(999.3, 5)
    assert pos[1] == pytest.approx(0.3) and pos[2] == pytest.approx(9.3) and pos[3] == pytest.approx(9.3)


def test_either_neighbour_of_a_drum_in_motion_is_right_and_nothing_else() -> None:
    crop = render.Crop(np.zeros((4, 4, 3), np.uint8), "01240", "drum", value=1239.6, digits=5)
    assert set(render.neighbours(crop)) == {"01239", "01240"}
    assert "01249" not in render.neighbours(crop) and "01230" not in render.neighbours(crop)
    still = render.Crop(np.zeros((4, 4, 3), np.uint8), "01239", "drum", value=1239.0, digits=5)
    assert render.neighbours(still) == ("01239",)
    # every rendered drum's label is one of its neighbours
    for c in render.render_set(5, 60, "drum"):
        assert c.text in render.neighbours(c)
        assert c.value is not None


def test_turning_last_drums_stop_between_every_pair_of_digits() -> None:
    # A camera catches a running meter with its last drum between 6 and 7 as often as between 2 and 3;
    # held-back counters must show every pair, not mostly 9 -> 0 as the "carry" drawing does (a model
    # refined on "carry" drums only read some of the others wrong: 0126/0127 as 0120).
    def pairs(motion: str) -> list[int]:
        rng = np.random.default_rng(0)
        counts = [0] * 10
        for _ in range(600):
            c = render._drum(rng, motion)
            assert c.value is not None
            frac = c.value - math.floor(c.value)
            if render.MOTION < frac < 1 - render.MOTION:
                counts[math.floor(c.value) % 10] += 1
        return counts

    even = pairs("even")
    assert min(even[:9]) >= 15, even  # each of 0 -> 1 ... 8 -> 9 on at least 2.5% of counters
    assert even[9] >= 90, even  # and carries, the hardest sight, still on one in six
    assert min(pairs("carry")[:9]) < 15  # the old drawing fails the first check
    # "natural": a 9 carries only as often as the other digits turn, so no pair is the model's safe guess
    natural = pairs("natural")
    assert min(natural) >= 15 and max(natural) <= 2.5 * min(natural), natural
    assert max(even) > 2.5 * min(even)  # "even" fails it: a third of its turning drums carry
    with pytest.raises(ValueError, match="motion"):
        render._drum(np.random.default_rng(0), "spinning")


def test_camera_strength_zero_keeps_the_picture_clean() -> None:
    rng = np.random.default_rng(0)
    c = render.clean(rng, "seg7")
    out = render.camera(c.image, np.random.default_rng(1), strength=0.0)
    assert out.shape[2] == 3 and out.dtype == np.uint8


def test_counters_are_drawn_bolder_or_thinner_only_where_every_digit_keeps_its_shape() -> None:
    # Old Standard Bold thinned by a pixel loses its hairlines: a 4 without its diagonal reads as a 1
    # with a bar, and a crop so labelled 4 teaches the model to guess and scores a reader on a guess.
    # Open Sans ExtraBold two pixels bolder fills the counter of its 4 and one of its 8. (`_keeps`: no
    # stroke broken, no counter closed or shrunk below a quarter of its area.)
    thin = "/usr/share/fonts/truetype/fonts-oldstandard/OldStandard-Bold.ttf"
    bold = "/usr/share/fonts/truetype/open-sans/OpenSans-ExtraBold.ttf"
    for face, weight in ((thin, -1), (bold, 2)):
        asked = [render._glyph(d, face, 40, 40, weight, 1.0) for d in "0123456789"]
        plain = [render._glyph(d, face, 40, 40, 0, 1.0) for d in "0123456789"]
        broken = [d for d, a, p in zip("0123456789", asked, plain, strict=True)
                  if not render._keeps(render._shape(p), render._shape(a))]  # fmt: skip
        assert broken, (face, weight)  # the weight asked for does spoil digits of these faces
        drawn = render._legible_digits(face, 40, 40, weight, 1.0)
        for d, g, p in zip("0123456789", drawn, plain, strict=True):
            assert render._keeps(render._shape(p), render._shape(g)), (face, weight, d)
    # the 4 keeps the counter its diagonal closes, in the strip the drums turn
    strip = render._digit_strip(thin, 40, 40, 64, -1, 1.0)
    assert render._shape(strip[4 * 64 : 5 * 64]) == render._shape(render._glyph("4", thin, 40, 40, 0, 1.0))
    # and a face that takes the weight is drawn with it: bolder counters stay in training
    sans = next(f for f in fonts._faces("DejaVuSans.ttf", str(fonts.DEJAVU_DIR)))
    heavier = render._legible_digits(sans, 40, 40, 1, 1.0)
    as_asked = [render._glyph(d, sans, 40, 40, 1, 1.0) for d in "0123456789"]
    assert all(np.array_equal(a, b) for a, b in zip(heavier, as_asked, strict=True))
    assert float(sum(g.sum() for g in heavier)) > 1.1 * float(
        sum(render._glyph(d, sans, 40, 40, 0, 1.0).sum() for d in "0123456789")
    )


@pytest.mark.parametrize("kind", ["seg7", "drum"])
def test_a_tight_box_cuts_the_crop_round_what_it_shows_and_keeps_the_label(kind: str) -> None:
    # Users draw region boxes tight round the digits: a DSEG 1 is then the crop's first column. A model
    # never shown such crops dropped edge digits (13905 -> 3905) on another renderer's crops.
    for i in range(20):
        loose = render.clean(np.random.default_rng([5, i]), kind)
        tight = render.clean(np.random.default_rng([5, i]), kind, looks=render.Looks(tight=1.0))
        assert tight.text == loose.text  # the same reading, drawn the same way, boxed otherwise
        h, w = tight.image.shape[:2]
        assert h <= loose.image.shape[0] and w <= loose.image.shape[1]
        gray = cv2.cvtColor(tight.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        edges = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        cols = np.flatnonzero(edges.max(axis=0) > 0.08 * edges.max())  # faint ghost cells count too
        # what is drawn reaches the box, but for its margin (at most 6% of the height)
        assert cols[0] <= 0.06 * h + 2 and w - 1 - cols[-1] <= 0.06 * h + 2, (i, cols[0], cols[-1], w, h)


def test_spaced_display_cells_are_the_faces_own_cells_further_apart() -> None:
    # LCD glass spaces its digits as its maker chose: another renderer's displays with wider gaps were
    # read with a 1 beside a gap dropped (1 18 195 -> 18195).
    face = fonts._faces("DSEG7Classic-Regular.ttf", str(fonts.DSEG_DIR))[0]
    cells = ["!", "1", "2.", "3"]
    ink0, ghost0 = render._spaced_cells(cells, "8.", face, 0.0)
    ink, ghost = render._spaced_cells(cells, "8.", face, 0.3)
    assert ink.shape == ghost.shape and ink0.shape == ghost0.shape  # lit and unlit segments line up
    # with no gap, the cells sit where the face itself sets them
    drawn = fonts._draw_text("".join(cells), face, render.FONT_PX)
    assert abs(drawn.shape[1] - ink0.shape[1]) <= 0.2 * ink0.shape[1]
    cell = ink0.shape[1] / len(cells)
    assert ink.shape[1] - ink0.shape[1] >= 3 * 0.3 * cell * 0.8  # three gaps, each 30% of a cell wider

    def lit_columns(mask: np.ndarray) -> list[int]:  # the x ranges with ink, left to right
        cols = (mask.max(axis=0) > 0.5).astype(np.int8)
        return list(np.flatnonzero(np.diff(cols) == 1))

    # the blank cell shows no ink; the three drawn cells are three runs of ink (the point with its 2)
    assert ink[:, : int(cell)].max() < 0.5 and len(lit_columns(ink)) >= 3


def test_each_later_look_draws_only_its_own_kind() -> None:
    # A look (render.Looks) that drew from rng for a kind it does not change would change that kind's
    # crops in every phase and set that uses the look: the held-back sets, benches and tests that ask
    # for counters drawn far apart must keep their displays as they were.
    plain = {k: digest(render.render_set(41, 30, k)) for k in render.KINDS}
    counters_only = render.Looks(apart=1.0, marks=1.0, points=1.0, dark_red=1.0)
    displays_only = render.Looks(spaced=1.0)
    seven_segment_only = render.Looks(forms=1.0)
    for kind in render.KINDS:
        drawn = digest(render.render_set(41, 30, kind, looks=counters_only))
        assert (drawn != plain[kind]) == (kind == "drum"), kind
        drawn = digest(render.render_set(41, 30, kind, looks=displays_only))
        assert (drawn != plain[kind]) == (kind in ("seg7", "seg14")), kind
        drawn = digest(render.render_set(41, 30, kind, looks=seven_segment_only))
        assert (drawn != plain[kind]) == (kind == "seg7"), kind


def test_displays_draw_their_own_forms_of_6_7_and_9_under_the_same_label() -> None:
    # Many LED and LCD drivers draw 6 and 9 without tails and 7 with a hook. Shown only the usual forms,
    # the model read another renderer's tail-less 9 as 4 and its tail-less 6 as 5.
    from edge_ocr.bench.meter import HOOKED_7, TAILLESS, seven_segment

    def ink(text: str, forms: dict[str, str] | None = None) -> float:
        img = seven_segment(text, ghost=0.0, slant_deg=0.0, forms=forms)
        return float((255 - cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)).sum())

    assert ink("4") < ink("9", TAILLESS) < ink("9")  # a 4 with its top: one segment from either
    assert ink("6", TAILLESS) < ink("6") and ink("7") < ink("7", HOOKED_7)
    assert seven_segment("8", forms=TAILLESS).tobytes() == seven_segment("8").tobytes()

    crops = render.render_set(43, 120, "seg7", looks=render.Looks(forms=1.0), strength=0.0)
    plain = render.render_set(43, 120, "seg7", strength=0.0)
    assert digest(crops) != digest(plain)
    # every display the look picks draws tail-less 6 and 9 or a hooked 7; at share 0 rng is untouched
    for seed in range(20):
        forms = render._digit_forms(np.random.default_rng(seed), 1.0)
        assert forms is not None and (forms.items() >= TAILLESS.items() or forms.items() >= HOOKED_7.items())
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    assert render._digit_forms(rng, 0.0) is None and rng.bit_generator.state == state

