"""The configuration schema, declared once: one frozen pydantic model per section.

Every model forbids unknown keys and describes every field (the JSON Schema that editors use is generated
from them: `edge-ocr config schema`). Ranges are constraints (ge/le); a rule about one value is a field
validator; a rule that involves several keys is a model validator. A validator that finds problems raises
one `config_rules` error listing each (key, message), so that loading reports every one at its own key and
line (see `load`).

Scalars are strict (`42` is not a string, `"5"` is not a number, `yes` in quotes is not a boolean):
YAML already types them, and a quoted number is more often a mistake than a wish. Relative paths are
resolved against the folder of the file (the validation context's ``base_dir``); ``~`` is expanded.

Adding a source type: write its model with a ``type: Literal["<name>"]`` field and add it to `SourceConfig`.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge_ocr.config.secrets import read_secret

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
PASSWORD_KEYS = ("password_file", "password_env", "password_credential")


def default_device_id() -> str:
    """The host name, made safe for an MQTT topic level."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-.")
    return name or "edge-ocr"


def _not_empty(value: Any) -> Any:
    if value == "":
        raise PydanticCustomError("path_type", "expected a path")
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative to the configuration file's folder (the context's base_dir), like a shell would read it."""
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    return path if path.is_absolute() or base is None else (base / path).absolute()


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1 for a Literal; YAML's `true` is no QoS
        raise PydanticCustomError("literal_error", "expected a number")
    return value


ConfigPath = Annotated[Path, BeforeValidator(_not_empty), AfterValidator(_resolve)]
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]


class Rules:
    """Problems found by the rules across keys, raised together: each (key path inside the model, message).

    A source's (and TLS's) rules are checked by the validator of the collection holding it, not by its
    own: a source with problems of its own would otherwise hide the rules between sources (two sources
    watching one folder), and a TLS section those of its broker.
    """

    def __init__(self) -> None:
        self.problems: list[tuple[tuple[str | int, ...], str]] = []

    def add(self, key: str | tuple[str | int, ...], message: str) -> None:
        self.problems.append(((key,) if isinstance(key, str) else key, message))

    def extend(self, prefix: tuple[str | int, ...], other: Rules) -> None:
        self.problems += [(prefix + key, message) for key, message in other.problems]

    def raise_any(self) -> None:
        if self.problems:
            summary = "; ".join(f"{'.'.join(map(str, k))}: {m}" for k, m in self.problems)
            raise PydanticCustomError(
                "config_rules", "{summary}", {"summary": summary, "problems": self.problems}
            )


def _one_secret(rules: Rules, model: BaseModel, keys: tuple[str, ...], needs: str | None) -> None:
    """At most one of `keys` set; if one is and `needs` is given, that is what it lacks."""
    set_ = [k for k in keys if getattr(model, k) is not None]
    if len(set_) > 1:
        rules.add(set_[1], f"set only one of {', '.join(keys)}")
    if set_ and needs:
        rules.add(set_[0], needs)


class Section(BaseModel):
    """The common settings of every section: immutable (threads share them), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- sources


class FolderSource(Section):
    """A hot folder: files dropped into `path` are read, then moved to `done_dir` or `failed_dir`."""

    name: Name = Field(description="Source name; used in topics (`result/<name>`) and folder names.")
    type: Literal["folder"] = Field(description="Source type.")
    path: ConfigPath = Field(description="The inbox folder watched for new files.")
    done_dir: ConfigPath | None = Field(
        None, description="Where a processed file goes; default <state_dir>/done/<name>."
    )
    on_success: Literal["move", "delete"] = Field(
        "move", description="`move` to done_dir, or `delete` the file once its result is stored."
    )
    failed_dir: ConfigPath | None = Field(
        None, description="Where a failed file goes with NAME.error.json; default <state_dir>/failed/<name>."
    )
    recursive: StrictBool = Field(False, description="Also watch sub-folders.")
    include: tuple[StrictStr, ...] = Field(
        ("*",), description="Glob patterns (file name, case-insensitive) of files to take."
    )
    exclude: tuple[StrictStr, ...] = Field(
        (), description="Glob patterns of files to leave alone (hidden and temp files always are)."
    )
    poll: Literal["auto"] | StrictBool = Field(
        "auto", description="Poll instead of inotify: auto (poll on network file systems), true, false."
    )
    poll_interval_s: StrictFloat = Field(1.0, ge=0.05, le=3600, description="Polling period.")
    stable_s: StrictFloat = Field(
        2.0, ge=0, le=3600,
        description="A file not closed cleanly is taken once size and mtime are unchanged this long.",
    )  # fmt: skip
    settle_s: StrictFloat = Field(
        0.5, ge=0, le=3600,
        description="A closed or moved-in file is taken after this long without changes (copiers set "
        "times right after close).",
    )  # fmt: skip
    rescan_s: StrictFloat = Field(
        60.0, ge=0, description="Full rescan period to catch missed events; 0: off."
    )
    max_file_mb: StrictFloat = Field(64.0, ge=0.001, description="Larger files go to failed_dir unread.")
    duplicates: Literal["process", "skip", "republish"] = Field(
        "process",
        description="A file seen before (same sha256): process again, skip, or republish the stored result.",
    )

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        if self.on_success == "delete" and self.done_dir is not None:
            rules.add("done_dir", "done_dir is not used with `on_success: delete`; remove one of them")
        for key in ("done_dir", "failed_dir"):
            target = getattr(self, key)
            if target is None:
                continue
            if target == self.path:
                rules.add(key, f"must not be the inbox itself ({self.path})")
            elif self.recursive and target.is_relative_to(self.path):
                rules.add(key, "must not be inside the inbox when `recursive: true` (files would come back)")
        return rules


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
        "(reason `low_confidence`).",
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
                rules.add("charset", f"the meter model reads {METER_CHARS!r} only, not {''.join(extra)!r}; "
                          "use model: general for other characters")
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
        "`cmd/capture {\"source\": ..., \"reference\": true}` (or from the first frame when missing).",
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


SourceConfig = Annotated[FolderSource | CameraSource, Field(discriminator="type")]
SOURCE_TYPES: dict[str, type[BaseModel]] = {"folder": FolderSource, "camera": CameraSource}


# --------------------------------------------------------------------------------------------- mqtt


class TlsConfig(Section):
    """TLS for `mqtts://`: the CA that signed the broker's certificate, and an optional client certificate."""

    ca_file: ConfigPath | None = Field(None, description="CA bundle (PEM); default: the system CAs.")
    cert_file: ConfigPath | None = Field(
        None, description="Client certificate (PEM), for brokers that require one."
    )
    key_file: ConfigPath | None = Field(
        None, description="Client private key (PEM); default: inside cert_file."
    )
    key_password_file: ConfigPath | None = Field(None, description="File holding the key passphrase.")
    key_password_env: StrictStr | None = Field(
        None, description="Environment variable holding the key passphrase."
    )
    key_password_credential: StrictStr | None = Field(
        None, description="systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the passphrase."
    )
    check_hostname: StrictBool = Field(
        True, description="Verify the broker's host name against its certificate."
    )

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        _one_secret(rules, self, ("key_password_file", "key_password_env", "key_password_credential"), None)
        if self.key_file is not None and self.cert_file is None:
            rules.add("key_file", "key_file needs cert_file")
        return rules

    def read_key_password(self) -> str | None:
        """The key passphrase from its configured source, or None; raises ConfigError if it cannot be read."""
        return read_secret(
            "mqtt.tls.key_password",
            file=self.key_password_file,
            env=self.key_password_env,
            credential=self.key_password_credential,
        )


class HomeAssistantConfig(Section):
    """Home Assistant MQTT discovery."""

    enabled: StrictBool = Field(False, description="Publish retained discovery configs.")
    discovery_prefix: StrictStr = Field("homeassistant", description="Home Assistant's discovery prefix.")


class Secret:
    """Field marker: the value is replaced by `***` in `Config.redacted()`."""


class MqttConfig(Section):
    """The broker connection and topic layout."""

    url: StrictStr = Field(description="mqtt://host[:port] or mqtts://host[:port] (TLS).")
    topic_prefix: StrictStr = Field("edge-ocr", description="First topic level: <prefix>/<device_id>/...")
    client_id: StrictStr | None = Field(None, description="MQTT client id; default edge-ocr-<device_id>.")
    username: Annotated[StrictStr | None, Secret()] = Field(
        None, description="Login name (redacted in logs)."
    )
    password_file: ConfigPath | None = Field(None, description="File holding the password.")
    password_env: StrictStr | None = Field(None, description="Environment variable holding the password.")
    password_credential: StrictStr | None = Field(
        None, description="systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the password."
    )
    keepalive: StrictInt = Field(
        60, ge=5, le=65535, description="Keepalive in seconds; the broker sends `offline` after 1.5x."
    )
    qos: Annotated[Literal[1, 2], BeforeValidator(_no_bool)] = Field(
        1, description="QoS of results (0 would lose them)."
    )
    retain_results: StrictBool = Field(False, description="Retain the last result per source on the broker.")
    max_inflight: StrictInt = Field(
        20, ge=1, le=1000, description="Results sent but not yet acknowledged, at most."
    )
    backoff_min_s: StrictFloat = Field(
        1.0, ge=0.1, description="First reconnect delay; doubles up to backoff_max_s."
    )
    backoff_max_s: StrictFloat = Field(60.0, ge=0.1, description="Longest reconnect delay.")
    stats_interval_s: StrictFloat = Field(60.0, ge=0, description="Period of the stats message; 0: off.")
    tls: TlsConfig | None = Field(None, description="TLS options (mqtts:// only).")
    home_assistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant discovery."
    )

    @model_validator(mode="after")
    def _rules(self) -> MqttConfig:
        rules = Rules()
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            rules.add("url", f"must start with mqtt:// or mqtts://, got {self.url!r}")
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            rules.add("url", f"bad port in {self.url!r}")
        if not parts.hostname:
            rules.add("url", f"no host in {self.url!r}")
        if parts.password is not None:
            rules.add(
                "url",
                "secrets are not accepted in the configuration file; put the password in mqtt.password_file",
            )
        elif parts.username is not None:
            rules.add("url", "put the user name in mqtt.username, not in the URL")
        if parts.path not in ("", "/") or parts.query:
            rules.add("url", f"unexpected path or query in {self.url!r}")
        if self.tls is not None and parts.scheme == "mqtt":
            rules.add("tls", "TLS options need an mqtts:// url")
        prefix = self.topic_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0"):
            rules.add(
                "topic_prefix", f"{prefix!r} is not a topic prefix (no + or #, no leading or trailing /)"
            )
        credential = self.password_credential
        if credential is not None and ("/" in credential or credential in ("", ".", "..")):
            rules.add("password_credential", "a credential name is a plain file name")
        need = "a password needs a username (mqtt.username)" if self.username is None else None
        _one_secret(rules, self, PASSWORD_KEYS, need)
        if self.backoff_min_s > self.backoff_max_s:
            rules.add("backoff_min_s", "must not exceed backoff_max_s")
        if self.tls is not None:
            rules.extend(("tls",), self.tls.rules())
        rules.raise_any()
        return self

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.use_tls else 1883)

    def read_password(self) -> str | None:
        """The password from its configured source, or None; raises ConfigError if it cannot be read."""
        return read_secret(
            "mqtt.password",
            file=self.password_file,
            env=self.password_env,
            credential=self.password_credential,
        )


# --------------------------------------------------------------------------------------------- the rest


class OutboxConfig(Section):
    """Bounds of the durable outbox; when full, new files wait (back pressure), nothing is dropped."""

    max_messages: StrictInt = Field(10_000, ge=1, description="Messages waiting, at most.")
    max_bytes: StrictInt = Field(
        64 * 1024 * 1024, ge=1024, description="Bytes waiting (topic + payload), at most."
    )


class StorageConfig(Section):
    """The low-space guard: below the reserve, new files wait in the inbox and results keep flowing."""

    min_free_mb: StrictFloat = Field(
        64.0, ge=0,
        description="Free MiB to keep on the filesystems of state_dir, done_dir and failed_dir; 0: no guard.",
    )  # fmt: skip
    min_free_percent: StrictFloat = Field(
        5.0, ge=0, le=100,
        description="The same reserve as a share of each filesystem; the smaller of the two applies.",
    )  # fmt: skip
    check_interval_s: StrictFloat = Field(
        5.0, ge=0.1, le=3600, description="Seconds between two free-space checks."
    )

    def reserve_bytes(self, total_bytes: int) -> int:
        """The reserve on a filesystem of `total_bytes`: a small card keeps its 5%, a big disk its 64 MiB."""
        return int(min(self.min_free_mb * 1024 * 1024, total_bytes * self.min_free_percent / 100))


class EngineConfig(Section):
    """The OCR engine."""

    workers: StrictInt = Field(1, ge=1, le=64, description="OCR worker threads.")
    threads: StrictInt = Field(
        0, ge=0, le=256, description="onnxruntime intra-op threads per worker; 0: its default."
    )
    max_pixels: StrictInt = Field(40_000_000, ge=1, description="Larger images are refused before decoding.")
    use_cls: StrictBool = Field(True, description="Run the 0/180 degree direction classifier.")
    precision: Literal["auto", "int8", "fp32"] = Field(
        "auto",
        description="auto: INT8 for a model only where it passed the build's accuracy gate and runs >= 1.1x "
        "faster on this CPU (measured at the first start, then cached); int8 or fp32 force it.",
    )
    model_set: Literal["ppocrv6-small", "ppocrv4-mobile"] | None = Field(
        None,
        description="Model set: ppocrv6-small (the default: most accurate) or ppocrv4-mobile (faster on "
        "long lines).",
    )
    models_dir: ConfigPath | None = Field(
        None, description="Folder with manifest.yaml; default: the installed models."
    )


class HttpConfig(Section):
    """The HTTP server: /healthz and /metrics; with `api`, POST /api/ocr, the watch API and the web page."""

    enabled: StrictBool = Field(False, description="Serve /healthz and /metrics.")
    host: StrictStr = Field(
        "127.0.0.1", description="Listen address; any other than loopback needs a token (token_*)."
    )
    port: StrictInt = Field(9464, ge=1, le=65535, description="Listen port.")
    api: StrictBool = Field(
        False,
        description="Also serve POST /api/ocr, the watch API and the web page at / (edge-ocr serve: always).",
    )
    token_file: ConfigPath | None = Field(
        None, description="File holding the bearer token clients send (Authorization: Bearer ...)."
    )
    token_env: StrictStr | None = Field(None, description="Environment variable holding the bearer token.")
    token_credential: StrictStr | None = Field(
        None, description="systemd credential ($CREDENTIALS_DIRECTORY/<name>) holding the bearer token."
    )
    cors_origins: tuple[StrictStr, ...] = Field(
        (), description="Origins allowed to call the API from a browser (CORS); empty: none."
    )
    tls_cert: ConfigPath | None = Field(None, description="TLS certificate (PEM); with tls_key: HTTPS.")
    tls_key: ConfigPath | None = Field(None, description="TLS private key (PEM, unencrypted).")
    max_body_mb: StrictFloat = Field(
        20.0, gt=0, le=1024, description="Largest request body; larger: 413, refused before it is read."
    )
    max_pixels: StrictInt | None = Field(
        None, ge=1, description="Largest image the API decodes; default: engine.max_pixels."
    )
    queue_size: StrictInt = Field(
        4, ge=0, le=1000, description="API requests waiting beyond those running; more: 429 with Retry-After."
    )
    api_workers: StrictInt = Field(
        1, ge=1, le=64,
        description="API requests decoded and read at once (each takes its turn at the engine).",
    )
    deadline_s: StrictFloat = Field(
        30.0, gt=0, le=3600, description="Seconds from a request's arrival to its answer; past it: 504."
    )
    cache_entries: StrictInt = Field(
        128, ge=0, description="Results kept by content hash and options (LRU); 0: no cache."
    )

    @model_validator(mode="after")
    def _rules(self) -> HttpConfig:
        rules = Rules()
        _one_secret(rules, self, ("token_file", "token_env", "token_credential"), None)
        if (self.tls_cert is None) != (self.tls_key is None):
            rules.add("tls_key" if self.tls_key is None else "tls_cert", "tls_cert and tls_key go together")
        rules.raise_any()
        return self


class LoggingConfig(Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class Config(Section):
    """The edge-ocr configuration. Paths are absolute after loading."""

    model_config = ConfigDict(title="edge-ocr configuration")

    state_dir: ConfigPath = Field(
        description="Outbox, bookkeeping and the optimized-graph cache (graphs/) live here."
    )
    sources: tuple[SourceConfig, ...] = Field(min_length=1, description="Image sources; at least one.")
    device_id: Name = Field(
        default_factory=default_device_id, description="Topic level naming this device; default hostname."
    )
    mqtt: MqttConfig | None = Field(
        None, description="Broker; null: results go to stdout and stay in the outbox."
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Outbox bounds.")
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="Free space kept on the folders written to."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="OCR engine.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Local HTTP.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")

    @field_validator("sources")
    @classmethod
    def _sources(cls, sources: tuple[FolderSource | CameraSource, ...]) -> tuple[Any, ...]:
        rules = Rules()
        names: dict[str, int] = {}
        inboxes: dict[Path, int] = {}
        for i, src in enumerate(sources):
            if isinstance(src, FolderSource):
                if src.path in inboxes:
                    rules.add(
                        (i, src.type, "path"), f"sources[{inboxes[src.path]}] already watches {src.path}"
                    )
                inboxes.setdefault(src.path, i)
            if src.name in names:
                rules.add((i, src.type, "name"), f"duplicate source name (also sources[{names[src.name]}])")
            names.setdefault(src.name, i)
            rules.extend((i, src.type), src.rules())  # located like pydantic does
        rules.raise_any()
        return sources

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    def with_derived_defaults(self) -> Config:
        """Fill the defaults that depend on other keys (done/failed/evidence folders, the client id)."""
        sources: list[FolderSource | CameraSource] = []
        for src in self.sources:
            if isinstance(src, FolderSource):
                done = src.done_dir
                if done is None and src.on_success == "move":
                    done = self.state_dir / "done" / src.name
                failed = src.failed_dir or self.state_dir / "failed" / src.name
                src = src.model_copy(update={"done_dir": done, "failed_dir": failed})
            elif src.evidence is not None and src.evidence.dir is None:
                evidence = src.evidence.model_copy(update={"dir": self.state_dir / "evidence" / src.name})
                src = src.model_copy(update={"evidence": evidence})
            sources.append(src)
        mqtt = self.mqtt
        if mqtt is not None and mqtt.client_id is None:
            mqtt = mqtt.model_copy(update={"client_id": f"edge-ocr-{self.device_id}"})
        return self.model_copy(update={"sources": tuple(sources), "mqtt": mqtt})

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain data (paths as strings, tuples as lists), secrets masked unless `redact` is False."""
        data = self.model_dump(mode="json")
        if redact:
            _redact(self, data)
        return data

    def redacted(self) -> dict[str, Any]:
        """What to log: `to_dict(redact=True)`."""
        return self.to_dict(redact=True)


REDACTED = "***"


def _redact(model: BaseModel, data: dict[str, Any]) -> None:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is not None and any(isinstance(m, Secret) for m in info.metadata):
            data[name] = REDACTED
        elif isinstance(value, BaseModel):
            _redact(value, data[name])
        elif isinstance(value, tuple):
            for item, sub in zip(value, data[name], strict=True):
                if isinstance(item, BaseModel):
                    _redact(item, sub)
