"""Plain-Python events for the workspaces' session models (napari's EventEmitter, reduced): a
model emits, the Qt layer or a test connects callbacks. No Qt here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class EventEmitter:
    """One kind of event: ``connect(callback)``, ``emit(**values)`` calls each callback with the
    values as keyword arguments, in the order they were connected."""

    def __init__(self, name: str):
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, **values: Any) -> None:
        for callback in list(self._callbacks):
            callback(**values)


class Events:
    """A namespace of named emitters: ``Events("rows_changed", "index_changed").rows_changed``."""

    def __init__(self, *names: str):
        for name in names:
            setattr(self, name, EventEmitter(name))
