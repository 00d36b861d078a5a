"""Plausibility of meter readings: the number in a region's text, checked against the remembered value.

A numeric region (config `numeric:`) turns each stable reading into a number and checks it against the
last *accepted* value of that region, which persists in ``<state_dir>/meters/<source>.json`` (so a
restart or a reboot checks the first reading against what was read before it). Only the rules that are
configured apply:

- ``monotonic``: a counter never runs backwards (``increasing``), or never forwards;
- ``max_jump``: the largest change at once;
- ``max_rate``: per reading, or per minute of the time since the last value was accepted. The allowed
  change per minute grows with that time (after an outage the meter moved on), and always allows one step
  of the last digit: a display that shows 100.00 for ten minutes and then 100.01 changed by one step, not
  at a rate of 0.01 per second (the false "rate too high" rejections of other meter readers);
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


def break_of(
    rules: NumericRules, value: float, text: str, last: Remembered, at: float
) -> tuple[str, str] | None:
    """The first rule `value` (read at `at`) breaks against `last`: (rule, sentence), or None."""
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
        if rules.rate_per == "reading":
            allowed = rules.max_rate
        else:
            minutes = max(0.0, at - last.at) / 60
            allowed = rules.max_rate * minutes + resolution(text, rules) + rules.hysteresis
        if abs(delta) > allowed * (1 + 1e-9):
            per = "per reading" if rules.rate_per == "reading" else f"in {max(0.0, at - last.at):.0f} s"
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

    def check(self, text: str, at: float | None = None) -> Verdict:
        at = time.time() if at is None else at
        last = self.memory.get(self.region)
        if last is not self._baseline:
            self._run, self._baseline = None, last  # set by a command: a new start for agreement
        value, why = parse_number(text, self.rules)
        if value is None:
            return Verdict("reject", None, last, "not_a_number", why)
        if last is None:
            return self._accept(value, text, at, None)
        if abs(value - last.value) <= self.rules.hysteresis + 1e-12 or math.isclose(value, last.value):
            self._run = None
            return Verdict("same", last.value, last)
        broken = break_of(self.rules, value, text, last, at)
        if broken is None:
            return self._accept(value, text, at, last)
        return self._rejected(value, text, at, last, broken)

    def _accept(
        self, value: float, text: str, at: float, last: Remembered | None, *, rebased: str = ""
    ) -> Verdict:
        self._run = None
        remembered = Remembered(value, at, text, "agreement" if rebased else "reading")
        self.memory.set(self.region, remembered)
        self._baseline = remembered
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
