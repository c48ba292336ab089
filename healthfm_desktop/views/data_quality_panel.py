"""The Data quality panel: one tree for every import of the session, those with findings first,
newest first within each: the source and its workspace, a line of counts, then what was
unreadable, out of range, duplicated or missing, each item with the reason."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

KIND_TITLES = {"unreadable": "Unreadable", "out_of_range": "Out of range", "duplicated": "Duplicated", "missing": "Missing"}


class DataQualityPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.hint = QLabel("Each file or folder you open is checked here: what could not be read, what was out of "
                           "range, duplicated or missing.")
        self.hint.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Item", "Detail"])
        self.tree.setColumnWidth(0, 320)
        self.tree.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.tree)
        self._with_findings = 0

    def add_report(self, report) -> QTreeWidgetItem:
        top = QTreeWidgetItem([f"{Path(report.source).name} ({report.workspace})", report.summary()])
        top.setToolTip(0, report.source)
        for kind, title in KIND_TITLES.items():
            count = report.counts[kind]
            if not count:
                continue
            group = QTreeWidgetItem([f"{title} ({count})", ""])
            for item, detail in report.found[kind]:
                child = QTreeWidgetItem([item, detail])
                child.setToolTip(1, detail)
                group.addChild(child)
            hidden = count - len(report.found[kind])
            if hidden:
                group.addChild(QTreeWidgetItem([f"… {hidden} more", ""]))
            top.addChild(group)
        # an import with findings goes on top; a clean one below the last with findings, so that
        # clean imports arriving later do not push what the user has to look at out of view
        self._with_findings += not report.clean
        self.tree.insertTopLevelItem(0 if not report.clean else self._with_findings, top)
        top.setExpanded(True)
        for index in range(top.childCount()):
            top.child(index).setExpanded(True)
        return top


def install_data_quality(window, controller) -> DataQualityPanel:
    """A "Data quality" dock beside the log, filled as ``controller`` reports; shown when an
    import has something to report."""
    panel = DataQualityPanel()
    dock = QDockWidget("Data quality", window)
    dock.setObjectName("dataQualityDock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.tabifyDockWidget(window.log_dock, dock)
    dock.hide()

    def on_report(report) -> None:
        panel.add_report(report)
        if not report.clean:
            opening = dock.isHidden()
            dock.show()
            dock.raise_()
            if opening:  # a finding opens the dock low, leaving the workspace its room; the
                # user's own height is kept once it is open
                window.resizeDocks([dock], [max(140, window.height() // 5)], Qt.Orientation.Vertical)

    controller.report_ready.connect(on_report)
    window.data_quality_dock = dock
    panel.controller = controller  # keep the controller alive with its panel
    return panel
