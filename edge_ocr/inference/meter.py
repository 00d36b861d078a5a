"""The meter model's reader: a grayscale crop of a display or counter -> its digits, with each one's
probability (CTC, optionally constrained to a region's characters).

The model (trained by `edge_ocr.train`, shipped as package data, see `edge_ocr.meter_model`) is a small
CRNN: ReLU convolutions, a BiLSTM and a softmax over `0-9 . - space` and the CTC blank. It reads a
crop at a fixed height of `HEIGHT` rows and its own width; its charset is in the model's metadata
(`character`, one symbol a line, the space appended last, as PP-OCR does it).

`prepare` is the one place a crop becomes the model's input: training calls it too, so the model sees
at run time exactly what it was trained on.
"""

from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np
import onnxruntime as ort

from edge_ocr.inference.ctc import Decoded, class_mask, masked, runs
from edge_ocr.inference.gearing import geared
from edge_ocr.inference.recognizer import charset_from_metadata
from edge_ocr.inference.session import run

HEIGHT = 32
MIN_WIDTH = 16
MAX_WIDTH = 512
_DIGITS = "0123456789"
_LOW, _HIGH = 1.0, 99.0  # percentiles mapped to 0 and 1: glare and low light are stretched alike
# A reading whose weakest character is below this gets a second look (`MeterReader.read`). Set on fresh
# rendered sets: at 0.7 about one crop in six is looked at again.
SECOND_LOOK_BELOW = 0.7
# ... and so does a sure reading that left a character half seen (`unread`). Of 5,200 fresh rendered
# crops (seeds 9.8M / 9.9M + kind, strength 0.7 and 1.0), no sure right reading left more than 0.1;
# 8 of the 63 sure wrong ones did (up to 0.75), drums whose last, turning digit was dropped among them.
UNREAD_BELOW = 0.1
# A sure reading is checked a quarter wider (`wider`) unless it is surer still: every character at least
# `CHECK_BELOW`, and no frame giving the point `POINT_UNREAD_BELOW` where it read none
# (`MeterReader._point_unread`). The check is a second run of the model, most of a sure crop's time.
# Model 5ce5770a INT8, past the 0.3 floor: of 7,500 crops (seeds 9,600,002/3/101, the held-back sets,
# another renderer's 2,000), the check changed only readings below 0.9 and points dropped: two
# 7-segment readings at 0.9989 read 2.402 as 2402 (a missing character has no probability of its own
# to be weak). Past 0.9 and a point frame below 0.05 it changed none, but skipping there read 5 fewer
# of 9,000 fresh crops right (seeds 7,700,000 and 8,100,000 + kind): a digit dropped at 0.92, a point
# seen at 0.03, three more. Past 0.95 and 0.01 (these values) 1 of those 9,000 reads right no longer
# (seg7, strength 1), none of the 7,500, and in FP32 1 of 5,000 more (seeds 8,200,000 + kind); the
# check is skipped for 25% of held-back drums and 53-61% of the displays.
CHECK_BELOW = 0.95
POINT_UNREAD_BELOW = 0.01


# Every crop is read with this share of its height of its own edge columns added left and right. A box
# drawn tight round the digits leaves a DSEG 1 or a point in the crop's first or last columns, where
# the convolutions see their zero padding instead of face: another renderer's 7-segment displays,
# boxed so, lost edge digits (13905 -> 3905). FP32 model 0bff711d, without and with, right and kept /
# wrong above the last digit past the floor: 1,000 of those displays 0.968 / 22 -> 0.979 / 11; our
# crops boxed tight at camera strength 0.7, 500 seg7 0.970 -> 0.986, 500 drums 0.972 / 6 -> 0.976 / 3;
# 1,000 seg7 at strength 1.0 0.978 -> 0.981; 6,000 drums at strength 0 to 1.0 5,875 / 26 -> 5,869 /
# 23; held back, drums 0.953 / 4 -> 0.943 / 7, seg14 0.983 -> 0.973, seg7 0.983 -> 0.980 (3 crops of
# 300 either way is the noise between training runs; 11 of 1,000 displays is not).
SIDES = 0.15


def width_for(crop: np.ndarray) -> int:
    h, w = crop.shape[:2]
    return int(min(MAX_WIDTH, max(MIN_WIDTH, math.ceil(HEIGHT * w / max(h, 1)))))


def percentiles(img: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """`[float(v) for v in np.percentile(img, qs)]` (its default, linear method) to the bit, from one
    partial sort of the image for all of `qs`.

    np.percentile took 48-50 us of a 32x160 crop's preparation where this takes 16, and it loads numpy.ma
    on first use (1.3 MB). Bit for bit, because the model was trained on crops stretched by the values
    numpy gives (checked against it in tests/test_meter_model.py); hence numpy's arithmetic: the step
    between the two neighbours in the image's dtype, the rest in float64, from below under half way and
    from above past it, as numpy computes for a tuple of quantiles (float64), not for a lone float."""
    flat = img.reshape(-1)
    last = flat.size - 1
    ats = [q / 100.0 * last for q in qs]
    pairs = [(math.floor(at), min(math.floor(at) + 1, last)) for at in ats]
    part = np.partition(flat, sorted({k for pair in pairs for k in pair}))
    out = []
    for at, (i, j) in zip(ats, pairs, strict=True):
        a, b = float(part[i]), float(part[j])
        d = float(part[j] - part[i])  # in the image's dtype, as numpy subtracts
        t = at - i
        out.append(a + d * t if t < 0.5 else b - d * (1 - t))
    return out


def prepare(crop: np.ndarray, width: int | None = None) -> np.ndarray:
    """A BGR or gray uint8 crop -> float32 (HEIGHT, width) in -1..1, contrast-stretched.

    Shrinking averages (INTER_AREA) so thin segments are not aliased away; the stretch between the 1st
    and 99th percentile makes a dim LCD and a sunlit one look alike to the model. Polarity is left as
    it is: the model was trained on dark-on-light and light-on-dark displays."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    w = width if width is not None else width_for(gray)
    shrink = gray.shape[0] > HEIGHT
    img = cv2.resize(gray, (w, HEIGHT), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    img = img.astype(np.float32)
    lo, hi = percentiles(img, (_LOW, _HIGH))
    img = (img - np.float32(lo)) * np.float32(2.0 / max(hi - lo, 8.0)) - np.float32(1.0)
    return np.clip(img, -1.0, 1.0)


def _band(crop: np.ndarray, level: float, grow: float, tighter_than: float) -> slice | None:
    """The rows round the strongest vertical strokes (|d/dx|) whose stroke mass stays above `level` of
    the peak's, grown by `grow` of their height above and below; None unless that is tighter than
    `tighter_than` of the crop (or when no band stands out).

    Digit strokes and drum cell walls have vertical edges; the face's frame and a plain surround
    hardly any. The box's left and right edges (strokes the full height) are left out."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape
    if h < 16:
        return None
    side = max(1, w // 20)
    strokes = np.abs(cv2.Sobel(gray.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3))
    profile = strokes[:, side : w - side].mean(axis=1)
    k = max(3, (h // 10) | 1)
    profile = cv2.GaussianBlur(profile.reshape(-1, 1), (1, k), 0).ravel()
    peak = int(np.argmax(profile))
    above = profile > profile[peak] * level
    top = peak
    while top > 0 and above[top - 1]:
        top -= 1
    bottom = peak + 1
    while bottom < h and above[bottom]:
        bottom += 1
    extra = int((bottom - top) * grow)
    top, bottom = max(0, top - extra), min(h, bottom + extra)
    if bottom - top > tighter_than * h or bottom - top < 8:
        return None
    return slice(top, bottom)


def fitted(crop: np.ndarray) -> np.ndarray:
    """The crop cut to the rows anything is drawn on (above 12% of the peak's stroke mass, with 30% of
    their height added above and below), when they are less than 70% of it; else the crop as is.

    A region box drawn generously round a display or counter leaves plain face above and below. The
    model learnt digits that fill a good part of the box: squeezed to `HEIGHT` rows with the digits a
    third of it, it misreads them, often surely. 200 fresh crops a kind at camera strength 0.7 with
    plain face added above and below, half their height in all / their height twice, read 0.745 / 0.56
    (7-segment) and 0.81 / 0.52 (counters, 14% / 33% wrong above the last digit); cut first, 0.95 /
    0.96 and 0.98 / 0.99 (1.5% / 1% wrong above the last digit). The 30% keeps the digits off the
    edges: with 20%, a clean printed reading cut tight to its digits read 1 as 5. A drum's rims above
    and below its digits and a display's ghost segments keep most crops as the renderer draws them
    above the level: of those 200 a kind, 1 seg7 and 37 drums are cut a little, and read as before
    (0.995) and better (0.985 vs 0.975). On the held-back and tuning sets (1,500 and 3,000 crops) it
    read 0.9687 and 0.9810 of all crops, against 0.9667 and 0.9800 uncut."""
    band = _band(crop, 0.12, 0.3, 0.7)
    return crop if band is None else crop[band]


def sided(crop: np.ndarray) -> np.ndarray:
    """The crop with `SIDES` of its height of its own edge columns repeated left and right."""
    p = max(1, round(crop.shape[0] * SIDES))
    return cv2.copyMakeBorder(crop, 0, 0, p, p, cv2.BORDER_REPLICATE)


def text_band(crop: np.ndarray) -> slice | None:
    """The rows where the digits are, with a quarter of their height above and below; None when they
    fill most of the crop already (or no band stands out).

    A region box drawn round a whole counter face leaves the digits a third of its height: squeezed to
    `HEIGHT` rows they are 10 px tall, and a turning drum's two half digits or a decimal point are a few
    pixels.

    Only a second look (`framings`): read first instead of the whole crop, the band cost drums 7 points
    at camera strength 0.7 (on a still drum it cuts the rims of the digits above and below, which the
    model learnt to see); as one more look it added 0.2-0.4 points of all crops on the tuning, held-back
    and fresh sets."""
    return _band(crop, 0.5, 0.25, 0.8)


def wider(crop: np.ndarray) -> np.ndarray:
    """The crop stretched to a quarter more columns: the framing a sure reading is checked against."""
    return prepare(crop, min(MAX_WIDTH, int(width_for(crop) * 1.25)))


def framings(crop: np.ndarray) -> list[np.ndarray]:
    """The crop as other region boxes would give it to the model: wider (`wider`, first) and narrower
    (a face seen from the side), cut 8% tighter above and below, 10% looser all round, and round the
    digits' band (`text_band`) where that is tighter still. The model was trained on boxes that move
    (`render._region_box`); a weak reading that most framings agree on is a reading that does not hang
    on where the box edge fell."""
    return [wider(crop), *_beyond_wider(crop)]


def _beyond_wider(crop: np.ndarray) -> list[np.ndarray]:
    """`framings` but the first: what a sure reading's second look adds to its wider check."""
    h = crop.shape[0]
    out = [prepare(crop, max(MIN_WIDTH, int(width_for(crop) * 0.8)))]
    t = int(h * 0.08)
    if t >= 1 and h - 2 * t >= 8:
        out.append(prepare(crop[t : h - t]))
    p = max(1, int(h * 0.1))
    out.append(prepare(cv2.copyMakeBorder(crop, p, p, p, p, cv2.BORDER_REPLICATE)))
    band = text_band(crop)
    if band is not None:
        out.append(prepare(crop[band]))
    return out


def weakest(d: Decoded) -> float:
    return min(d.char_confidences) if d.char_confidences else 0.0


def unread(probs: np.ndarray) -> float:
    """The most a frame two or more frames away from every character the best path emits gives to
    any character: what the model half saw and did not read (a turning last drum whose two half
    digits it dropped, a faint digit at the edge). Frames next to an emitted character are left out:
    their mass is the character's own onset and fade."""
    best = probs.argmax(axis=1)
    near = np.zeros(len(best), dtype=bool)
    for _, start, end in runs(best):
        near[max(0, start - 2) : end + 2] = True
    if near.all():
        return 0.0
    return float(1.0 - probs[~near, 0].min())


def agreed(looks: list[Decoded]) -> Decoded:
    """The reading most looks agree on; of a tie, the one whose weakest character is surest.

    Its character probabilities are scaled by the square root of the share of looks that read it: a
    reading the other framings disagree on is less sure than its best look says, and a region's
    confidence floor (`config.camera.METER_MIN_CONFIDENCE`) should see that. The misreads the looks
    split on are the ones a meter must not publish: of 2,500 rendered crops (300 held-back and 700
    fresh drums at full camera strength, 500 at 0.5, 1,000 seven-segment), FP32 model 60402582, the
    0.3 floor then rejected 17 of 41 drum readings wrong above the last digit (3 before) and 7 of 58
    other wrong ones (none), for 16 of 2,408 right ones (1), all but one blurred drums at full
    strength. The share itself (no root) rejected 25 of 41 but 66 right ones."""
    votes = Counter(d.text for d in looks)
    best = max(looks, key=lambda d: (votes[d.text], weakest(d)))
    k = math.sqrt(votes[best.text] / len(looks))
    return Decoded(best.text, best.confidence * k, tuple(c * k for c in best.char_confidences))


class MeterReader:
    """Immutable but for a cache of class masks; `read(crops)` returns a `Decoded` per crop, in order.

    Crops are read one at a time: a camera region gives one crop a frame, and batching crops of other
    widths would pad them with columns the model never saw in training."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.charset = charset_from_metadata(session)
        self._masks: dict[str, np.ndarray] = {}
        self._point = self.charset.index(".") + 1 if "." in self.charset else None
        have = all(d in self.charset for d in _DIGITS)
        self._digit_classes = np.array([self.charset.index(d) + 1 for d in _DIGITS]) if have else None

    def mask(self, allowed: str) -> np.ndarray:
        key = "".join(sorted(set(allowed)))
        m = self._masks.get(key)
        if m is None:  # a benign race: two threads compute the same mask
            m = self._masks[key] = class_mask(self.charset, key)
        return m

    def read(self, crops: list[np.ndarray], allowed: str | None = None) -> list[Decoded]:
        """Each crop's reading, from the crop cut to the rows anything is drawn on where a loose box left
        plain face above and below (`fitted`), its edge columns repeated beside it (`sided`). A weak one
        (a character below `SECOND_LOOK_BELOW`, or a character half seen and left out: `unread`) gets a
        second look: the crop is read again in four or five other framings (`framings`), and the reading
        most looks agree on wins (the surest one of a tie). A sure one is read once more a quarter wider
        (`wider`), and gets the second look only when that reads otherwise; one surer still
        (`CHECK_BELOW`, `POINT_UNREAD_BELOW`) is taken as read. A reading costs one run of the model,
        two or up to six.

        Sure is not always right: a confident misread often hangs on where the box edge fell. Of 5,000
        fresh crops (seeds 7,700,000 + i: 1,000 drums at camera strength 0, 0.5 and 1.0, 1,000
        7-segment at 0.5 and 1.0), the check made 17 more right (7-segment 0.993 -> 0.997 and 0.971 ->
        0.978, drums 0.981 -> 0.983, 0.982 and 0.938 -> 0.942) and left 21 drum readings wrong above
        the last digit where there were 25; every framing of every crop (three times the runs) did no
        better."""
        mask = self.mask(allowed) if allowed is not None else None
        out = []
        for crop in (sided(fitted(c)) for c in crops):
            probs = masked(self._probs(prepare(crop)), mask)
            first = self._decode(probs)
            least = weakest(first)
            if least >= SECOND_LOOK_BELOW and unread(probs) < UNREAD_BELOW:
                if least >= CHECK_BELOW and self._point_unread(probs, first) < POINT_UNREAD_BELOW:
                    out.append(first)
                    continue
                check = self._look(wider(crop), mask)
                if check.text == first.text:
                    out.append(first)
                    continue
                looks = [first, check] + [self._look(x, mask) for x in _beyond_wider(crop)]
            else:
                looks = [first] + [self._look(x, mask) for x in framings(crop)]
            out.append(agreed(looks))
        return out

    def _point_unread(self, probs: np.ndarray, read: Decoded) -> float:
        """The most any frame gives the point when the reading has none: a display's small lit point
        that the best path passed over."""
        if self._point is None or "." in read.text:
            return 0.0
        return float(probs[:, self._point].max())

    def _probs(self, x: np.ndarray) -> np.ndarray:
        return run(self._session, {self._input: x[None, None]})[0][0]

    def _look(self, x: np.ndarray, mask: np.ndarray | None) -> Decoded:
        return self._decode(masked(self._probs(x), mask))

    def _decode(self, p: np.ndarray) -> Decoded:
        """Greedy CTC (as `ctc.greedy_decode`) over probabilities already `masked` to the allowed
        characters, a counter's turning drums decided jointly (`gearing`), and the blank cells read as
        spaces dropped: a reading is the digits between them."""
        chars, firsts, dists = [], [], []
        for cls, start, end in runs(p.argmax(axis=1)):
            ch = self.charset[cls - 1]
            chars.append(ch)
            firsts.append(start)
            if ch in _DIGITS and self._digit_classes is not None:
                frame = start + int(np.argmax(p[start:end, cls]))
                d = p[frame, self._digit_classes]
                dists.append(d / max(float(d.sum()), 1e-12))
            else:
                dists.append(None)
        read = geared(chars, dists)
        keep = [i for i, c in enumerate(read) if c != " "]
        if not keep:
            return Decoded("", 0.0)
        confs = tuple(float(p[firsts[i], self.charset.index(read[i]) + 1]) for i in keep)
        return Decoded("".join(read[i] for i in keep), float(np.mean(confs)), confs)
