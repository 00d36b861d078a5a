"""The camera source's sections of the schema: the camera itself, its regions (box or polygon, charset,
pattern, the meter model), a numeric region's plausibility rules, Home Assistant per region, evidence,
training crops and alignment."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from edge_ocr.config.base import (
    PASSWORD_KEYS,
    ConfigPath,
    Name,
    Rules,
    Section,
    _one_secret,
    _resolve,
)
from edge_ocr.config.secrets import read_secret

Box = tuple[StrictInt, ...]


def _box_problem(box: tuple[int, ...]) -> str | None:
    if len(box) != 4 or box[2] < 2 or box[3] < 2 or min(box[:2]) < 0:
        return "must be [x, y, w, h] with x, y >= 0 and w, h >= 2"
    return None


class NumericConfig(Section):
    """A region that shows a number (a meter): how to read it and which changes are plausible.

    A rule that is not set does not apply. A reading that breaks one is never published as the value.
    """

    decimals: StrictInt | None = Field(
        None, ge=0, le=9,
        description="Digits after a fixed decimal point, inserted when the display's point is too faint "
        "to read (any point read is ignored); null: the point is read from the display.",
    )  # fmt: skip
    signed: StrictBool = Field(False, description="The value may be negative (a leading minus sign).")
    monotonic: Literal["increasing", "decreasing", "none"] = Field(
        "none", description="`increasing`: a decrease is rejected (a counter); `decreasing`: an increase."
    )
    carry: StrictBool | None = Field(
        None,
        description="A counter's digit moves on only while all digits right of it pass 9 -> 0 (geared "
        "drums): a reading whose digit moved on while those still read 9 (01239 -> 01249, a drum read "
        "mid-roll as the next digit), or whose lower digits wrapped to 0 while it stayed (01239 -> "
        "01230), is rejected (reason carry). Assumes the last digit turns less than a full turn between "
        "two readings: a true change of more that ends with the lower digits at 9 is rejected too and "
        "becomes the value through `accept_after_s`; set false for a fast meter read seldom. "
        "null: on for `monotonic: increasing`, else off.",
    )
    max_rate: StrictFloat | None = Field(
        None, gt=0,
        description="Largest change per `rate_per` (minute or reading); null: no limit. Per minute it "
        "grows with the time since the value was last read (accepted or read again within the "
        "`hysteresis`), plus one step of the last digit.",
    )  # fmt: skip
    rate_per: Literal["minute", "reading"] = Field(
        "minute", description="`max_rate` is per minute of elapsed time, or per accepted reading."
    )
    max_jump: StrictFloat | None = Field(
        None, gt=0, description="Largest change from the last accepted value at once; null: no limit."
    )
    hysteresis: StrictFloat = Field(
        0.0, ge=0,
        description="A change this small is jitter (the last digit flickering): not published, and not "
        "a break of `monotonic`.",
    )  # fmt: skip
    unit: StrictStr | None = Field(None, description="Unit of the value (m³, kWh, °C); sent as `unit`.")
    on_invalid: Literal["publish", "withhold"] = Field(
        "publish",
        description="A reading that breaks a rule: `publish` it with valid: false and the reason, or "
        "`withhold` it (logged and kept as evidence only).",
    )
    accept_after_s: StrictFloat | None = Field(
        600.0, ge=0,
        description="Rejected readings that agree with each other this long (and at least 3 times) are "
        "accepted as the new truth, and that is reported; null: never.",
    )  # fmt: skip


METER_CHARS = "0123456789.- "  # what the meter model knows (edge_ocr/train/crnn.py)
# The weakest-character floor of a meter-model region without `min_confidence`. Set on an earlier
# model (1,500 held-back crops: 6 of 15 wrong drum readings and 5 of 52 wrong display readings
# rejected, no right one; at 0.4 it began to cost right ones). With the shipped model (51ab8fe4),
# INT8, on the card's 1,500 held-back crops (seeds 7,000,000 + kind, full camera strength): 7 of 18
# wrong drum readings and 6 of 46 wrong display readings rejected, and 4 of 1,436 right ones, because
# a reading the reader's looks split on is less sure (`inference.meter.agreed`); 85b41963: 8 of 17,
# 8 of 50 and 3 of 1,433; the model and sets before that, 1 of 41 wrong and no right one. On fresh
# drums (`bench.meter_strength`, 1,500 a strength, FP32) it takes those wrong above the last digit
# from 62 to 25 at full strength for 10 right ones, and from 16 to 13 at strength 0.5 for 5; a floor
# of 0.45 stopped more there but cost 30 right ones of 600 at 0.5 (85b41963, INT8).
METER_MIN_CONFIDENCE = 0.3


class RegionHomeAssistant(Section):
    """The Home Assistant sensor of one region (with `mqtt.homeassistant.enabled`)."""

    enabled: StrictBool = Field(True, description="Publish a sensor and a problem sensor for this region.")
    name: StrictStr | None = Field(None, description="Sensor name; default `<source> <region>`.")
    device_class: StrictStr | None = Field(
        None, description="Home Assistant device class: water, gas, energy, power, temperature, ..."
    )
    state_class: Literal["measurement", "total", "total_increasing"] | None = Field(
        None,
        description="Default: `total_increasing` for `monotonic: increasing` meters, `measurement` for "
        "other numeric regions, none for text.",
    )
    icon: StrictStr | None = Field(None, description="An mdi: icon.")


class RegionConfig(Section):
    """A region of interest on a camera's frames, read on its own."""

    name: Name = Field(description="Region name; in each message as `region`.")
    box: tuple[StrictInt, ...] | None = Field(None, description="[x, y, w, h] in frame pixels.")
    polygon: tuple[tuple[StrictFloat, ...], ...] | None = Field(
        None, description="4 points [[x, y], ...]: a tilted region, perspective-corrected."
    )
    mode: Literal["line", "text"] = Field(
        "line", description="`line`: the region is one text line; `text`: detect lines in it."
    )
    pattern: StrictStr | None = Field(
        None, description="Regex the whole value must match; else it is sent with valid: false."
    )
    charset: StrictStr | None = Field(
        None,
        description="Allowed characters: the recognizer chooses among these only (an O-shaped digit is "
        "read as 0). Default for a numeric region: digits, the point unless `decimals` is set, and the "
        "minus if `signed`.",
    )
    min_confidence: StrictFloat | None = Field(
        None, ge=0, le=1,
        description="A reading whose mean or weakest character probability is lower is rejected "
        "(reason `low_confidence`). Unset: 0.3 for a region the meter model reads (on blurred counters "
        "it rejects about two in five of its wrong readings and three in a hundred right ones), none "
        "for the general model; 0 turns it off.",
    )  # fmt: skip
    numeric: NumericConfig | None = Field(None, description="The region shows a number: plausibility rules.")
    model: Literal["auto", "meter", "general"] = Field(
        "auto",
        description="Which recognizer reads the region: `meter`, edge-ocr's own digit model (digits, point, "
        "minus; 20x cheaper, trained on displays and counters); `general`, the document models; `auto`: "
        "meter for numeric regions, general otherwise.",
    )
    ghosts: Literal["auto", "suppress", "keep"] = Field(
        "auto",
        description="An LCD's unlit segments stay faintly visible and read as 8s and points: `suppress` "
        "whitens them before reading; `auto`: for numeric regions read by the general model (the meter "
        "model was trained on them).",
    )
    homeassistant: RegionHomeAssistant = Field(
        default_factory=RegionHomeAssistant,  # type: ignore[arg-type]
        description="Its Home Assistant sensor.",
    )

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        if self.box is not None and self.polygon is not None:
            rules.add("polygon", "give box or polygon, not both")
        if self.box is None and self.polygon is None:
            rules.add("box", "a region needs box: [x, y, w, h] or polygon: [[x, y] x4]")
        box, polygon = self.box, self.polygon
        if box is not None and (problem := _box_problem(box)):
            rules.add("box", problem)
        if polygon is not None and (len(polygon) != 4 or any(len(p) != 2 for p in polygon)):
            rules.add("polygon", "must be 4 points [[x, y], [x, y], [x, y], [x, y]]")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                rules.add("pattern", f"not a valid regular expression: {exc}")
        if self.reader() == "meter":
            if self.mode != "line":
                rules.add("model", "the meter model reads one line: use mode: line, or model: general")
            extra = sorted(set(self.charset or "") - set(METER_CHARS + ","))
            if extra:
                rules.add(
                    "charset",
                    f"the meter model reads {METER_CHARS!r} only, not {''.join(extra)!r}; "
                    "use model: general for other characters",
                )
        if self.charset == "":
            rules.add("charset", "must not be empty (leave it out to allow every character)")
        elif self.numeric is not None and not any(c.isdigit() for c in self.charset or "0"):
            rules.add("charset", "a numeric region's charset needs digits")
        return rules

    def reader(self) -> Literal["meter", "general"]:
        """The recognizer that reads this region (`model`, with auto resolved)."""
        if self.model == "auto":
            return "meter" if self.numeric is not None else "general"
        return self.model

    def confidence_floor(self) -> float | None:
        """`min_confidence`, or the meter model's default when unset."""
        if self.min_confidence is not None:
            return self.min_confidence
        return METER_MIN_CONFIDENCE if self.reader() == "meter" else None

    def allowed_chars(self) -> str | None:
        """The characters the recognizer may choose among (None: all the model knows)."""
        if self.charset is not None or self.numeric is None:
            return self.charset
        n = self.numeric
        return "0123456789" + (".," if n.decimals is None else "") + ("-" if n.signed else "")


class EvidenceConfig(Section):
    """Frames saved (boxes and values drawn) when a value changes; oldest deleted beyond the bounds."""

    dir: ConfigPath | None = Field(None, description="Folder; default <state_dir>/evidence/<name>.")
    max_files: StrictInt = Field(200, ge=1, description="Frames kept, at most.")
    max_mb: StrictFloat = Field(50.0, ge=0.01, description="MiB kept, at most.")


class TrainingConfig(Section):
    """Crops of the camera's numeric regions kept for fine-tuning the meter model, in
    <state_dir>/training/<name>/ (labels.tsv: what `edge-ocr train meter --from` reads)."""

    enabled: StrictBool = Field(
        True,
        description="Keep the crops of rejected readings (pending.tsv, unlabelled) and label them when "
        "the next valid reading shows the display did not change, or on `cmd/set_value`.",
    )
    max_files: StrictInt = Field(500, ge=1, description="Crops kept, at most; the oldest go first.")
    max_mb: StrictFloat = Field(20.0, ge=0.01, description="MiB of crops kept, at most.")


class AlignmentConfig(Section):
    """Re-align every frame to a reference frame by one or two patches of it, before regions are cut."""

    patches: tuple[Box, ...] = Field(
        description="One or two [x, y, w, h] boxes on the reference frame holding something fixed and "
        "textured (a label, a screw, the meter's frame edge). One patch corrects a shift; two, also a "
        "turn. Keep them out of the changing digits."
    )
    reference: ConfigPath | None = Field(
        None,
        description="The reference image; default <state_dir>/reference/<source>.png, saved by "
        '`cmd/capture {"source": ..., "reference": true}` (or from the first frame when missing).',
    )
    max_shift_px: StrictFloat = Field(
        80.0, gt=0, description="A larger shift from the reference is not trusted: the frame is not read."
    )
    max_angle_deg: StrictFloat = Field(10.0, gt=0, le=45, description="The same for a turn.")
    min_score: StrictFloat = Field(
        0.5, ge=0, le=1, description="Least normalized match score of every patch (1: identical)."
    )

    def rules(self) -> Rules:
        rules = Rules()
        if not 1 <= len(self.patches) <= 2:
            rules.add("patches", "give one or two patches")
        for j, box in enumerate(self.patches):
            if problem := _box_problem(box):
                rules.add(("patches", j), problem)
        return rules


def _is_file_url(url: str) -> bool:
    """A camera url naming a video file (not a device, not a stream URL)."""
    return bool(url) and "://" not in url and not url.startswith("/dev/") and not url.isdigit()


class CameraSource(Section):
    """A camera, stream or video file read every `interval_s`, per region of interest."""

    name: Name = Field(description="Source name; used in topics (`result/<name>`).")
    type: Literal["camera"] = Field(description="Source type.")
    url: StrictStr | Annotated[StrictInt, Field(ge=0)] = Field(
        description="Device index or /dev/videoN, rtsp:// http:// tcp:// URL, or a video file."
    )
    interval_s: StrictFloat = Field(
        1.0, ge=0, le=86400, description="Seconds between analysed frames; 0: every frame."
    )
    regions: tuple[RegionConfig, ...] = Field(
        (), description="Regions of interest; none: the whole frame (text mode)."
    )
    loop: StrictBool = Field(False, description="Repeat a video file at its end.")
    resolution: tuple[StrictInt, ...] | None = Field(
        None, description="[w, h] asked of a device; every frame is scaled to it."
    )
    open_timeout_s: StrictFloat = Field(10.0, ge=0.1, le=600, description="Open timeout.")
    read_timeout_s: StrictFloat = Field(
        5.0, ge=0.1, le=600, description="A read slower than this restarts the capture."
    )
    backoff_min_s: StrictFloat = Field(
        1.0, ge=0.01, description="First reconnect delay; doubles up to backoff_max_s."
    )
    backoff_max_s: StrictFloat = Field(30.0, ge=0.01, description="Longest reconnect delay.")
    change_threshold: StrictFloat = Field(
        2.0, ge=0, description="Mean grey-level change (0-255) below which a region is not read again."
    )
    debounce_frames: StrictInt = Field(
        2, ge=1, description="A new value is sent once read the same on this many frames."
    )
    evidence: EvidenceConfig | None = Field(
        None,
        description="Save the frame when a value changes, and the crop of a rejected reading; null: off.",
    )
    alignment: AlignmentConfig | None = Field(
        None, description="Re-align frames to a reference before cutting regions; null: off."
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig,  # type: ignore[arg-type]
        description="A training folder of the numeric regions' crops (for `edge-ocr train meter --from`).",
    )
    password_file: ConfigPath | None = Field(None, description="File holding the stream password.")
    password_env: StrictStr | None = Field(
        None, description="Environment variable holding the stream password."
    )
    password_credential: StrictStr | None = Field(
        None, description="systemd credential name holding the stream password."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | int, info: ValidationInfo) -> str | int:
        """A video file's path is resolved like every path."""
        return str(_resolve(Path(url), info)) if isinstance(url, str) and _is_file_url(url) else url

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        user = isinstance(self.url, str) and urlsplit(self.url).username
        need = None if user else "a stream password needs a user name in the URL (rtsp://user@host/...)"
        _one_secret(rules, self, PASSWORD_KEYS, need)
        if isinstance(self.url, str) and not self.url.strip():
            rules.add("url", "must not be empty")
        elif isinstance(self.url, str) and "://" in self.url and urlsplit(self.url).password is not None:
            rules.add(
                "url",
                "secrets are not accepted in the configuration file; keep the user name in the URL and put "
                "the password in password_file, password_env or password_credential",
            )
        if self.resolution is not None and (len(self.resolution) != 2 or min(self.resolution) < 1):
            rules.add("resolution", "must be [width, height], both positive")
        if self.backoff_min_s > self.backoff_max_s:
            rules.add("backoff_min_s", "must not exceed backoff_max_s")
        seen: dict[str, int] = {}
        for j, region in enumerate(self.regions):
            if region.name in seen:
                rules.add(
                    ("regions", j, "name"), f"duplicate region name (also regions[{seen[region.name]}])"
                )
            seen.setdefault(region.name, j)
            rules.extend(("regions", j), region.rules())
        if self.alignment is not None:
            rules.extend(("alignment",), self.alignment.rules())
        return rules

    def read_password(self) -> str | None:
        """The stream password from its configured source, or None; raises ConfigError if unreadable."""
        return read_secret(
            f"sources.{self.name}.password",
            file=self.password_file,
            env=self.password_env,
            credential=self.password_credential,
        )
