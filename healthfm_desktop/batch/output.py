"""Output conventions shared by every batch command (CLI.md general rules): JSON Lines on
stdout, ``path: reason`` on stderr for a bad input, a progress bar only on a terminal."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _json_default(value: Any):
    # numpy scalars and arrays, Paths: everything else is a bug and should fail loudly
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write null instead of an invalid document."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_json(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(_clean(record), default=_json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def report_bad_input(path: Any, reason: Any) -> None:
    message = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    sys.stderr.write(f"{path}: {message}\n")
    sys.stderr.flush()


def progress(items: Iterable[T], total: int | None = None, label: str = "") -> Iterator[T]:
    """Yield items; draw a one-line bar on stderr only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    done = 0
    for item in items:
        yield item
        done += 1
        if total:
            filled = int(30 * done / total)
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        else:
            sys.stderr.write(f"\r{label} {done}")
        sys.stderr.flush()
    sys.stderr.write("\n")


class ProgressLine:
    """``label: done/total unit, rate/s, about T left`` redrawn on one stderr line (at most five
    times a second; total and time left when the total is known), only when stderr is a
    terminal. Call it with the count done; ``close()`` draws the last count and ends the line."""

    def __init__(self, label: str, total: int | None = None, unit: str = "", enabled: bool | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.shown = None  # when the line was last drawn
        self.done = self.drawn = None  # the last count given, and the last drawn

    def __call__(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        self.done = done
        now = time.perf_counter()
        final = self.total is not None and done >= self.total
        if self.shown is not None and not (final or force) and now - self.shown < 0.2:
            return
        self.shown, self.drawn = now, done
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        text = f"{self.label}: {done}" + (f"/{self.total}" if self.total is not None else "") + \
            (f" {self.unit}" if self.unit else "") + f", {rate:,.0f}/s"
        if self.total is not None and 0 < done < self.total:
            text += f", about {_duration((self.total - done) / rate)} left"
        elif final:
            text += f", {_duration(elapsed)}"
        sys.stderr.write(f"\r{text:<79}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.shown is not None:
            if self.done != self.drawn:
                self(self.done, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = None


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
