"""The risk panel beside the timeline: the calibrated risk of in-hospital death, its trajectory
at 12/24/36/48 h, the variables that raise or lower it most for this stay (in percentage
points), the model's inputs the stay lacks or had out of range, or "not enough data to score"."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

RAISES = QColor(200, 40, 40)
LOWERS = QColor(30, 120, 60)


def risk_band(risk: float) -> str:
    """Words for a risk; the cut-offs are the cohort's base rate (about 14 %) and twice it."""
    if risk < 0.07:
        return "low"
    if risk < 0.14:
        return "below average"
    if risk < 0.28:
        return "above average"
    return "high"


def describe_inputs(inputs) -> str:
    """The model's inputs this stay lacks or had excluded as impossible, in a line each."""
    if inputs is None:
        return ""
    lines = []
    if inputs.missing:
        lines.append("Not measured (the model expects them): " + ", ".join(inputs.missing))
    if inputs.out_of_range:
        lines.append("Out of physiological range, not used: " + "; ".join(inputs.out_of_range))
    return "\n".join(lines)


class RiskPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("In-hospital mortality risk")
        self.title.setStyleSheet("font-weight: bold")
        self.score = QLabel("-")
        self.score.setStyleSheet("font-size: 28pt; font-weight: bold")
        self.band = QLabel("")
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: #555; font-size: 8pt")
        self.trajectory = pg.PlotWidget()
        self.trajectory.setBackground("w")
        self.trajectory.setFixedHeight(150)
        self.trajectory.setMouseEnabled(x=False, y=False)
        self.trajectory.setMenuEnabled(False)
        self.trajectory.setLabel("bottom", "hours")
        self.trajectory.setLabel("left", "risk %")
        self.trajectory.setXRange(10, 50)
        self.trajectory_curve = self.trajectory.plot([], [], pen=pg.mkPen((200, 40, 40), width=2), symbol="o",
                                                     symbolBrush=(200, 40, 40), symbolSize=7)
        self.contributions = QTableWidget(0, 3)
        self.contributions.setHorizontalHeaderLabels(["Variable", "Effect", "This stay"])
        self.contributions.verticalHeader().setVisible(False)
        self.contributions.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.contributions.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.contributions.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.contributions.setWordWrap(True)
        explanation = QLabel("Effect: how many percentage points this stay's value adds to the risk, compared "
                             "with a typical value of that variable (red raises, green lowers the risk).")
        explanation.setWordWrap(True)
        explanation.setStyleSheet("color: #555; font-size: 8pt")
        self.inputs = QLabel("")
        self.inputs.setWordWrap(True)
        self.inputs.setStyleSheet("color: #664d03; font-size: 8pt")
        layout = QVBoxLayout(self)
        for widget in (self.title, self.score, self.band, self.inputs, QLabel("Risk as known at 12, 24, 36, 48 h"), self.trajectory,
                       QLabel("What drives this score"), self.contributions, explanation, self.model_note):
            layout.addWidget(widget)
        self.setMinimumWidth(320)

    def show_assessment(self, assessment, problem: str | None = None) -> None:
        if assessment is None:
            self.score.setText("-")
            self.band.setText(problem or "")
            self.trajectory_curve.setData([], [])
            self.contributions.setRowCount(0)
            self.inputs.setText("")
            return
        self.inputs.setText(describe_inputs(assessment.inputs))
        if assessment.risk is None:
            self.score.setText("no score")
            self.band.setText(assessment.reason[:1].upper() + assessment.reason[1:] + ".")
            self.band.setWordWrap(True)
            self.trajectory_curve.setData([], [])
            self.contributions.setRowCount(0)
            self.model_note.setText(f"Model {assessment.model}: it gives no number for a stay this sparse.")
            return
        self.score.setText(f"{assessment.risk * 100:.1f} %")
        self.band.setText(f"{risk_band(assessment.risk)} (ICU average about 14 %)")
        hours = [h for h, _ in assessment.trajectory]
        risks = [r * 100 for _, r in assessment.trajectory]
        self.trajectory_curve.setData(hours, risks)
        self.trajectory.setYRange(0, max(30.0, max(risks) * 1.15))
        self.contributions.setRowCount(len(assessment.contributions))
        for row, contribution in enumerate(assessment.contributions):
            name = QTableWidgetItem(contribution.source)
            effect = QTableWidgetItem(f"{contribution.points:+.1f} pp")
            effect.setForeground(RAISES if contribution.points > 0 else LOWERS)
            effect.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.contributions.setItem(row, 0, name)
            self.contributions.setItem(row, 1, effect)
            self.contributions.setItem(row, 2, QTableWidgetItem(contribution.summary))
        self.contributions.resizeRowsToContents()
        self.model_note.setText(f"Model {assessment.model}: research use only, not for decisions about this patient.")
