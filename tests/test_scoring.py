"""edge_ocr.bench.scoring: edit distance, normalisation, line scores and SOURCES.md's page-matching rule,
on hand-made cases whose right answer can be worked out by hand."""

from __future__ import annotations

import random

import pytest

from edge_ocr.bench import scoring


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# --- distance and normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "ab", 2),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("ab", "ba", 2),
    ],
)
def test_levenshtein_known_values(a: str, b: str, d: int) -> None:
    assert scoring.levenshtein(a, b) == d
    assert scoring._levenshtein_dp(a, b) == d


def test_dp_fallback_agrees_with_levenshtein_on_random_strings() -> None:
    # The fallback must give the same figures as rapidfuzz, or scores would depend on what is installed.
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("ab c1") for _ in range(rng.randrange(12)))
        b = "".join(rng.choice("ab c1") for _ in range(rng.randrange(12)))
        assert scoring._levenshtein_dp(a, b) == scoring.levenshtein(a, b)


def test_normalize_variants() -> None:
    assert scoring.normalize("  Total  Amount\t:  12.50 ") == "totalamount:12.50"
    assert scoring.normalize("  Total  Amount\t:  12.50 ", "ws") == "total amount : 12.50"
    # Full-width colon and digits fold to ASCII only in the NFKC variant.
    assert scoring.normalize("合计：１２") == "合计：１２"
    assert scoring.normalize("合计：１２", "nows_nfkc") == "合计:12"
    with pytest.raises(ValueError):
        scoring.normalize("x", "bogus")


def test_score_lines_case_and_whitespace_folded() -> None:
    gts = ["TOTAL 12.50", "CASH", "GST NO."]
    preds = ["Total12.50", "CASK", ""]
    s = scoring.score_lines(gts, preds)
    assert (s.n, s.exact, s.distance, s.length) == (3, 1, 1 + 6, 10 + 4 + 6)
    assert s.cer == pytest.approx(7 / 20)
    assert s.accuracy == pytest.approx(1 / 3)
    ws = scoring.score_lines(gts, preds, "ws")
    assert ws.exact == 0  # "total12.50" lacks the space that "total 12.50" has
    assert ws.distance == 1 + 1 + 7


def test_score_lines_rejects_unpaired_inputs() -> None:
    with pytest.raises(ValueError):
        scoring.score_lines(["a"], [])


def test_line_cer() -> None:
    assert scoring.line_cer("ABCD", "abxd") == pytest.approx(0.25)
    assert scoring.line_cer("", "") == 0.0
    assert scoring.line_cer(" ", "x") == 1.0


# --- the page-matching rule ------------------------------------------------------------------------

# Only the matching itself needs rapidfuzz; the rectangle and total arithmetic tests run without it.
needs_rapidfuzz = pytest.mark.skipif(
    scoring._rapidfuzz()[0] is None, reason="the page rule needs rapidfuzz: pip install 'edge-ocr[bench]'"
)


@needs_rapidfuzz
def test_split_gt_segments_match_one_merged_prediction() -> None:
    # SROIE splits a printed row into item / qty / price; the engine reads the row as one line.
    gt = [
        ("MILO 1KG", box(10, 100, 200, 130)),
        ("2", box(300, 100, 320, 130)),
        ("25.90", box(400, 100, 480, 130)),
    ]
    pred = [("Milo 1kg   2   25.90", box(8, 98, 485, 132))]
    s = scoring.score_page(gt, pred)
    assert (s.lines, s.recalled, s.distance, s.length) == (3, 3, 0, 7 + 1 + 5)


@needs_rapidfuzz
def test_gt_line_split_across_predictions_is_joined_left_to_right() -> None:
    gt = [("TOTAL AMOUNT 12.50", box(10, 100, 400, 130))]
    # Given right to left on purpose: the rule joins candidates in x order, not in list order.
    pred = [("12.50", box(320, 101, 400, 131)), ("Total Amount", box(10, 99, 250, 129))]
    s = scoring.score_page(gt, pred)
    assert (s.distance, s.length, s.recalled) == (0, 16, 1)


@needs_rapidfuzz
def test_missing_line_costs_its_full_length() -> None:
    gt = [("CASH", box(10, 100, 100, 130)), ("CHANGE 0.00", box(10, 200, 200, 230))]
    pred = [("CASH", box(10, 100, 100, 130))]
    s = scoring.score_page(gt, pred)
    assert (s.lines, s.recalled, s.distance, s.length) == (2, 1, 10, 4 + 10)
    assert s.cer == pytest.approx(10 / 14)
    assert s.recall == pytest.approx(0.5)


@needs_rapidfuzz
def test_only_the_aligned_part_of_a_wider_prediction_is_compared() -> None:
    # Extra predicted text around the GT segment is not charged (precision is not measured).
    gt = [("RM 5.00", box(300, 100, 380, 130))]
    assert scoring.score_page(gt, [("Rounding adj RM5.00 paid", box(0, 100, 400, 130))]).distance == 0
    s = scoring.score_page(gt, [("RM5.O0 paid", box(300, 100, 450, 130))])
    assert (s.distance, s.length) == (1, 6)  # "rm5.o0" vs "rm5.00"
    assert s.recalled == 0  # 1/6 > 0.1


@needs_rapidfuzz
def test_recall_threshold_is_inclusive() -> None:
    gt = [("ABCDEFGHIJ", box(0, 0, 200, 30))]
    s = scoring.score_page(gt, [("ABCDEFGHIX", box(0, 0, 200, 30))])
    assert s.distance == 1 and s.recalled == 1  # CER exactly 0.1 counts as recalled


@needs_rapidfuzz
def test_case_and_whitespace_are_folded_on_pages() -> None:
    gt = [("SDN BHD", box(10, 10, 120, 40))]
    s = scoring.score_page(gt, [("sdn  bhd", box(12, 12, 118, 38))])
    assert s.distance == 0


@pytest.mark.parametrize(
    ("pred_box", "candidate"),
    [
        (box(10, 115, 200, 145), True),  # half of the 30 px height overlaps vertically: enough
        (box(10, 116, 200, 146), False),  # 14 of 30 px: the next row, not this one
        (box(10, 100, 200, 110), True),  # a thin box inside the row: half of *its* height overlaps
        (box(201, 100, 300, 130), False),  # same row, but beside the GT segment
        (box(199, 100, 300, 130), True),  # any horizontal overlap is enough
    ],
)
def test_candidate_overlap_rule(pred_box: list[list[float]], candidate: bool) -> None:
    gt = scoring.Rect.of(box(10, 100, 200, 130))
    assert scoring.overlaps(gt, scoring.Rect.of(pred_box)) is candidate


@needs_rapidfuzz
def test_rotated_quads_are_matched_by_their_bounding_rectangles() -> None:
    gt = [("TOTAL", [[10, 100], [110, 104], [109, 134], [9, 130]])]
    pred = [("TOTAL", [[12, 102], [108, 105], [108, 133], [11, 131]])]
    assert scoring.score_page(gt, pred).distance == 0


def test_page_scores_add_up_over_pages() -> None:
    a = scoring.PageScores(lines=2, recalled=1, distance=3, length=10)
    b = scoring.PageScores(lines=3, recalled=3, distance=0, length=20)
    total = scoring.EMPTY_PAGE + a + b
    assert total == scoring.PageScores(5, 4, 3, 30)
    assert total.cer == pytest.approx(0.1)
    assert total.recall == pytest.approx(0.8)


@needs_rapidfuzz
def test_empty_gt_segments_are_not_scored() -> None:
    s = scoring.score_page([("  ", box(0, 0, 10, 10))], [])
    assert s == scoring.EMPTY_PAGE
