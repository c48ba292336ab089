"""Guards against a Qt binding that corrupts the interpreter: PySide6-Essentials 6.12.0 under
Python 3.11 drops a reference to True on every signal emit, and the app aborts with
"bool_dealloc" after a few hundred progress updates. The pinned binding must leave it alone."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    with_value = Signal(object)
    without_value = Signal()


def test_signal_emits_leave_bool_refcounts_alone(qapp):
    emitter = _Emitter()
    received = []
    emitter.with_value.connect(received.append)
    emitter.without_value.connect(lambda: None)
    true_before, false_before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(300):  # well under the ~570 that abort 6.12.0, so the test fails, not crashes
        emitter.with_value.emit(i)
        emitter.without_value.emit()
    assert len(received) == 300
    assert abs(sys.getrefcount(True) - true_before) < 50
    assert abs(sys.getrefcount(False) - false_before) < 50
