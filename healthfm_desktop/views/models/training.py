"""What the Models dialog and the workspaces' adaptation panel share: the train controls and the
summary of a trained model (cross-validated metrics with CIs, label counts, unreadable items)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit, QProgressBar, QPushButton


class TrainingControls:
    """Task, name, Train/Cancel, progress and the metrics label of one training form."""

    def __init__(self, on_train: Callable[[], None], on_cancel: Callable[[], None], prompt: str):
        self.task = QComboBox()
        self.task.addItems(["classification", "regression"])
        self.name = QLineEdit()
        self.name.setPlaceholderText("name of the new model")
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(on_train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(on_cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()  # shown while the form is busy: an idle bar is an empty box
        self.step = QLabel("")
        self.metrics = QLabel(prompt)
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)

    def show_progress(self, fraction: float, step: str) -> None:
        self.progress.show()
        self.progress.setValue(int(round(fraction * 100)))
        self.step.setText(step)

    def set_busy(self, busy: bool) -> None:
        """Train while idle, Cancel and the progress bar while a model trains."""
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)


def summary_lines(summary, items: str = "items") -> list[str]:
    """Rich-text lines for a trained model's summary (core.foundation AdaptationSummary)."""
    fit = summary.fit
    metrics = ", ".join(f"{key} {value:.3f} (95 % CI {fit.cv_ci95[key][0]:.3f}–{fit.cv_ci95[key][1]:.3f})"
                        for key, value in summary.cv.items() if key in fit.cv_ci95)
    counts = ", ".join(f"{label}: {count}" for label, count in (fit.label_counts or {}).items())
    lines = [f"<b>{summary.name} v{summary.version}</b>: {summary.task} on {summary.n} {items}, {fit.head}, "
             f"{summary.seconds:.1f} s", f"Cross-validated ({fit.folds}-fold): {metrics}"]
    if counts:
        lines.append(f"Labels: {counts}")
    if summary.errors:
        lines.append(f"{len(summary.errors)} items could not be read and were left out (first: "
                     f"{summary.errors[0][0]}: {summary.errors[0][1]})")
    return lines
