"""Plain-Python events of the workspaces' session models (napari's model events, reduced): a
session emits, its controller relays each as a Qt signal, a test connects a list; and the
Progress a core job yields between steps (a worker relays it, and cancels at a yield). No Qt here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Event:
    """A list of callbacks called with the event's values, in the thread that emits."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *values: Any) -> None:
        for callback in list(self._callbacks):
            callback(*values)


@dataclass(frozen=True)
class Progress:
    """A step of a job: ``fraction`` in [0, 1] (None when unknown) and a short message."""

    fraction: float | None = None
    message: str = ""
