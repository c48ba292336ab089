"""Output conventions shared by every batch command (CLI.md general rules): JSON Lines on
stdout, ``path: reason`` on stderr for a bad input, a progress bar only on a terminal."""

from __future__ import annotations

import json
import math
import sys
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
