"""Plausibility of meter readings: the number in a region's text, checked against the remembered value.

A numeric region (config `numeric:`) turns each stable reading into a number and checks it against the
last *accepted* value of that region, which persists in ``<state_dir>/meters/<source>.json`` (so a
restart or a reboot checks the first reading against what was read before it). Only the rules that are
configured apply:

- ``carry`` (on by default for ``monotonic: increasing``): a counter's higher digit moves on only while
  every digit right of it passes 9 -> 0 (a mechanical counter's drums are geared). A reading in which a
  higher digit moved on while the digits right of it still read 9 (01239 -> 01249: the tens drum read
  mid-roll as the next digit, a premature carry), or in which those digits wrapped to 0 while it stayed
  (01239 -> 01230), is rejected; see `carry_break`. No other rule catches a steady premature carry
  reliably: it is one step of a higher digit, a small change;
- ``monotonic``: a counter never runs backwards (``increasing``), or never forwards;
- ``max_jump``: the largest change at once;
- ``max_rate``: per reading, or per minute of the time since the remembered value was last *confirmed*
  (accepted, or read again within the hysteresis). The allowed change per minute grows with that time
  (after an outage the meter moved on), and always allows one step of the last digit: a display that
  shows 100.00 for ten minutes and then 100.01 changed by one step, not at a rate of 0.01 per second (the
  false "rate too high" rejections of other meter readers). It grows from the last confirmation, not
  from when the value was first accepted: while the true value keeps being read, a steady misread beside
  it does not become plausible with time (AI-on-the-edge-device issue #4112). The confirmation time is
  kept in memory only (not written on every reading): after a restart it grows from the first acceptance;
- ``hysteresis``: a change this small is jitter of the last digit: the value stands, nothing breaks.

A reading that breaks a rule is a `Verdict` with ``reject`` and the rule's name; it is never the value.
A stale value is better than a wrong one, but one bad rule (a meter swap, a wrong `max_rate`) must not
freeze a sensor forever: rejected readings that agree with each other (each passes the rules against the
one before it) for ``accept_after_s`` and at least `AGREE_MIN_READINGS` times become the new truth, and
the verdict says so (``rebased``). A valid reading in between ends such a run, so a short glare never
gets through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

AGREE_MIN_READINGS = 3
_NUMBER = re.compile(r"(-?)(\d*)(?:\.(\d*))?")


@dataclass(frozen=True)
class NumericRules:
    """A numeric region's rules (the config's `numeric:` section, as plain values)."""

    decimals: int | None = None
    signed: bool = False
    monotonic: Literal["increasing", "decreasing", "none"] = "none"
    carry: bool | None = None  # None: on for monotonic increasing (`checks_carry`)
    max_rate: float | None = None
    rate_per: Literal["minute", "reading"] = "minute"
    max_jump: float | None = None
    hysteresis: float = 0.0
    unit: str | None = None
    on_invalid: Literal["publish", "withhold"] = "publish"
    accept_after_s: float | None = 600.0

    @classmethod
    def from_config(cls, cfg: Any) -> NumericRules:
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__})

    @property
    def checks_carry(self) -> bool:
        """The `carry` rule applies: as set, else for `monotonic: increasing` only."""
        return self.monotonic == "increasing" if self.carry is None else self.carry


@dataclass(frozen=True)
class Remembered:
    """The last accepted value of a region and when it was first read (epoch seconds)."""

    value: float
    at: float
    text: str = ""
    source: str = "reading"  # reading, agreement (rebased) or command (cmd/set_value)


@dataclass(frozen=True)
class Verdict:
    """What the rules say of one reading: ``accept`` (a new value), ``same`` (no change beyond the
    hysteresis) or ``reject`` (never the value; `reason` names the rule, `detail` says it in words)."""

    kind: Literal["accept", "same", "reject"]
    value: float | None
    last: Remembered | None
    reason: str | None = None
    detail: str | None = None
    rebased: bool = False  # accepted because rejected readings agreed for accept_after_s


def parse_number(text: str, rules: NumericRules) -> tuple[float | None, str | None]:
    """(value, None), or (None, why not). With `decimals` the point is placed, whatever was read of it."""
    raw = text.replace(" ", "").replace(",", ".")
    if rules.decimals is not None:
        raw = raw.replace(".", "")
    m = _NUMBER.fullmatch(raw)
    if not m or not (m.group(2) or m.group(3)):
        return None, f"{text!r} is not a number"
    sign, whole, frac = m.groups()
    if sign and not rules.signed:
        return None, f"{text!r} has a minus sign, and the region is not signed"
    if rules.decimals is not None:
        value = int(whole) / 10**rules.decimals
    else:
        value = float(f"{whole or '0'}.{frac or '0'}")
    return (-value if sign else value), None


def resolution(text: str, rules: NumericRules) -> float:
    """One step of the last digit shown (0.01 for "12.34")."""
    if rules.decimals is not None:
        return 10.0**-rules.decimals
    raw = text.replace(",", ".")
    return 10.0 ** -(len(raw) - raw.index(".") - 1) if "." in raw else 1.0


def _fmt(value: float) -> str:
    return f"{value:.10g}"


_PLACES = {-3: "thousandths", -2: "hundredths", -1: "tenths", 0: "ones", 1: "tens", 2: "hundreds",
           3: "thousands"}  # fmt: skip


def carry_break(rules: NumericRules, value: float, text: str, last: Remembered) -> str | None:
    """Why `value` (read as `text`) breaks the carry rule against `last`, in a sentence; or None.

    The values are compared in steps of the last digit (`resolution`; with `decimals` the point is
    where `decimals` puts it), as integers: for each position k >= 1 (the digit left of the last one and
    up, while 10**k is not above both), H = value // 10**k is the number the digits from position k up
    show and low = value % 10**k the digits right of them. For a counter counting up:

    - premature carry: H grew by exactly one while low reads all 9 (01239 -> 01249; 01239.9 -> 01240.9).
      The higher drum turns only while the lower ones pass 9 -> 0, so a reader that takes a drum in mid
      roll for the next digit while the drums right of it still show 9 reads one turn too much;
    - missed carry: low wrapped to all 0 while H stayed (01239 -> 01230), from a last low in the upper
      half of its turn (nearer to the wrap than back down to 0: 01245 -> 01240 is left to `monotonic`).

    A counter counting down (`monotonic: decreasing`, with `carry: true`) borrows: the same with 9 and
    0 exchanged and H falling. With `monotonic: none` the direction is that of the change (so only the
    premature case applies). Both readings of a drum in motion pass (01239, 01240): only a combination
    that no counter shows at any moment is rejected.

    Assumed: the lower digits turn less than a full turn between two readings (a camera reads every few
    seconds). A true change of a full turn or more that ends with the lower digits at 9 (after an
    outage, or a fast meter read seldom) cannot be told from a premature carry: it is rejected, and
    becomes the value through the agreement of the readings after it (``accept_after_s``); a fast meter
    read seldom should set ``carry: false``. Readings with different numbers of digits (a leading zero
    lost) are compared by value; negative values are not checked.
    """
    if value < 0 or last.value < 0:
        return None
    step = resolution(text, rules)
    if rules.decimals is None and last.text:
        step = min(step, resolution(last.text, rules))
    new, old = round(value / step), round(last.value / step)
    if new == old:
        return None
    up = rules.monotonic == "increasing" or (rules.monotonic == "none" and new > old)
    shift = round(-math.log10(step))  # digits after the point
    k = 1
    while 10**k <= max(new, old):
        turn = 10**k
        (h_new, low_new), (h_old, low_old) = divmod(new, turn), divmod(old, turn)
        before, after = (turn - 1, 0) if up else (0, turn - 1)  # the lower digits before and after a wrap
        place = _PLACES.get(k - shift, f"10^{k - shift}")
        if h_new == h_old + (1 if up else -1) and low_new == before:
            wrap = "9 -> 0" if up else "0 -> 9"
            return (
                f"{_fmt(value)} after {_fmt(last.value)}: the {place} digit moved on "
                f"({h_old % 10} -> {h_new % 10}) while the digits right of it still read {low_new:0{k}d}; "
                f"a counter's digit turns only while all digits right of it pass {wrap}"
            )
        to_wrap = turn - low_old if up else low_old + 1
        if h_new == h_old and low_new == after and 2 * to_wrap < turn:
            return (
                f"{_fmt(value)} after {_fmt(last.value)}: the digits right of the {place} digit wrapped "
                f"({low_old:0{k}d} -> {low_new:0{k}d}) but it stayed at {h_new % 10}"
            )
        k += 1
    return None


def break_of(
    rules: NumericRules,
    value: float,
    text: str,
    last: Remembered,
    at: float,
    since: float | None = None,
) -> tuple[str, str] | None:
    """The first rule `value` (read at `at`) breaks against `last`: (rule, sentence), or None.

    `since`: when `last` was last confirmed (read again), from which a per-minute `max_rate` allowance
    grows; default `last.at`. `carry` goes first: a carry misread is named as such, also when it is a
    decrease (01239 -> 01230).
    """
    if rules.checks_carry:
        carried = carry_break(rules, value, text, last)
        if carried is not None:
            return "carry", carried
    delta = value - last.value
    if rules.monotonic == "increasing" and delta < 0:
        return (
            "monotonic",
            f"{_fmt(value)} is below the last value {_fmt(last.value)} (monotonic: increasing)",
        )
    if rules.monotonic == "decreasing" and delta > 0:
        return (
            "monotonic",
            f"{_fmt(value)} is above the last value {_fmt(last.value)} (monotonic: decreasing)",
        )
    if rules.max_jump is not None and abs(delta) > rules.max_jump:
        return "max_jump", f"a change of {_fmt(delta)} exceeds max_jump {_fmt(rules.max_jump)}"
    if rules.max_rate is not None:
        elapsed = max(0.0, at - (last.at if since is None else since))
        if rules.rate_per == "reading":
            allowed = rules.max_rate
        else:
            allowed = rules.max_rate * elapsed / 60 + resolution(text, rules) + rules.hysteresis
        if abs(delta) > allowed * (1 + 1e-9):
            per = "per reading" if rules.rate_per == "reading" else f"in {elapsed:.0f} s"
            return "max_rate", f"a change of {_fmt(delta)} {per} exceeds the allowed {_fmt(allowed)}"
    return None


class MeterMemory:
    """The remembered value of each numeric region of one camera, persisted in one small JSON file.

    Thread-safe: the camera's analysis thread checks readings, `cmd/set_value` (on the MQTT thread) sets
    a value. A file that cannot be written (full or read-only disk) is reported once per episode and the
    value is kept in memory: the readings still get checked, only a restart would forget.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._values: dict[str, Remembered] = {}
        self._write_failed = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning(
                "meter memory %s cannot be read (%s): every region starts without a value", self.path, exc
            )
            return
        for region, entry in (data.get("regions") or {}).items() if isinstance(data, dict) else ():
            try:
                self._values[region] = Remembered(
                    float(entry["value"]), float(entry["at"]), str(entry.get("text", "")),
                    str(entry.get("source", "reading")),
                )  # fmt: skip
            except (KeyError, TypeError, ValueError):
                log.warning("meter memory %s: the entry of region %s is damaged: ignored", self.path, region)

    def get(self, region: str) -> Remembered | None:
        with self._lock:
            return self._values.get(region)

    def set(self, region: str, remembered: Remembered) -> None:
        with self._lock:
            self._values[region] = remembered
            snapshot = dict(self._values)
        self._save(snapshot)

    def _save(self, values: dict[str, Remembered]) -> None:
        doc = {
            "regions": {
                name: {"value": r.value, "at": r.at, "text": r.text, "source": r.source}
                for name, r in sorted(values.items())
            }
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if not self._write_failed:
                log.warning(
                    "meter memory %s cannot be written (%s): values are kept in memory until it can",
                    self.path, exc,
                )  # fmt: skip
            self._write_failed = True
            return
        if self._write_failed:
            log.info("meter memory %s is written again", self.path)
        self._write_failed = False


@dataclass
class _Run:
    """Rejected readings that agree with each other so far."""

    first_at: float
    last: Remembered
    count: int
    rule: str


class NumericCheck:
    """One numeric region's rules against its remembered value; used by one thread (the camera's)."""

    def __init__(self, region: str, rules: NumericRules, memory: MeterMemory) -> None:
        self.region = region
        self.rules = rules
        self.memory = memory
        self._run: _Run | None = None
        self._baseline: Remembered | None = None
        # When the baseline was last confirmed (accepted or read again): a per-minute max_rate grows
        # from here. In memory only: None (after a restart, or a command) means the baseline's `at`.
        self._confirmed: float | None = None

    def check(self, text: str, at: float | None = None) -> Verdict:
        at = time.time() if at is None else at
        last = self.memory.get(self.region)
        if last is not self._baseline:
            # set by a command: a new start for agreement and for the rate allowance
            self._run, self._baseline, self._confirmed = None, last, None
        value, why = parse_number(text, self.rules)
        if value is None:
            return Verdict("reject", None, last, "not_a_number", why)
        if last is None:
            return self._accept(value, text, at, None)
        if abs(value - last.value) <= self.rules.hysteresis + 1e-12 or math.isclose(value, last.value):
            self._run, self._confirmed = None, at  # confirmed: the rate allowance starts again
            return Verdict("same", last.value, last)
        broken = break_of(self.rules, value, text, last, at, self._confirmed)
        if broken is None:
            return self._accept(value, text, at, last)
        return self._rejected(value, text, at, last, broken)

    def _accept(
        self, value: float, text: str, at: float, last: Remembered | None, *, rebased: str = ""
    ) -> Verdict:
        self._run = None
        remembered = Remembered(value, at, text, "agreement" if rebased else "reading")
        self.memory.set(self.region, remembered)
        self._baseline, self._confirmed = remembered, at
        return Verdict("accept", value, last, None, rebased or None, rebased=bool(rebased))

    def _rejected(
        self, value: float, text: str, at: float, last: Remembered, broken: tuple[str, str]
    ) -> Verdict:
        rule, detail = broken
        run, now = self._run, Remembered(value, at, text)
        if run is not None and break_of(self.rules, value, text, run.last, at) is None:
            run.last, run.count = now, run.count + 1
        else:
            run = self._run = _Run(at, now, 1, rule)
        after = self.rules.accept_after_s
        if after is not None and run.count >= AGREE_MIN_READINGS and at - run.first_at >= after:
            why = (
                f"accepted as the new value: {run.count} rejected readings agreed for "
                f"{at - run.first_at:.0f} s (first rejected by {run.rule}; last value {_fmt(last.value)})"
            )
            log.warning("region %s: %s", self.region, why)
            return self._accept(value, text, at, last, rebased=why)
        return Verdict("reject", None, last, rule, detail)
