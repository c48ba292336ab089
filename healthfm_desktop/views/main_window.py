"""The main window: workspace switcher, menus, status bar with the execution provider, log
panel, drag and drop. It only draws and emits intents; the app controller does the work."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QStackedWidget,
    QWidget,
)

from healthfm_desktop import __version__


class MainWindow(QMainWindow):
    paths_requested = Signal(list)  # [str] from drop or File > Open
    settings_requested = Signal()
    self_test_requested = Signal()
    model_cards_requested = Signal()
    licenses_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("HealthFM Desktop")
        self.setAcceptDrops(True)
        self.resize(1280, 800)

        self.switcher = QListWidget()
        self.switcher.setObjectName("workspaceSwitcher")
        self.stack = QStackedWidget()
        self._names: list[str] = []
        self.switcher.setFixedWidth(130)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(4, 4, 4, 4)
        row.addWidget(self.switcher)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.switcher.currentRowChanged.connect(self.stack.setCurrentIndex)

        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.log_dock.hide()

        self.provider_label = QLabel("Provider: …")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.hide()
        self.statusBar().addPermanentWidget(self.progress_bar)
        self.statusBar().addPermanentWidget(self.provider_label)

        self.last_message: tuple[str, str] | None = None
        self._busy_sources: set[str] = set()
        self._build_menus()

    # --- construction -------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_files_action = QAction("&Open Files…", self, shortcut=QKeySequence.StandardKey.Open)
        self.open_files_action.triggered.connect(self._ask_files)
        self.open_folder_action = QAction("Open &Folder…", self)
        self.open_folder_action.triggered.connect(self._ask_folder)
        self.open_zip_action = QAction("Open &Zip Archive…", self)
        self.open_zip_action.triggered.connect(self._ask_zip)
        file_menu.addActions([self.open_files_action, self.open_folder_action, self.open_zip_action])
        self.recent_menu = file_menu.addMenu("&Recent")
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        self.view_menu = self.menuBar().addMenu("&View")
        self.view_menu.addAction(self.log_dock.toggleViewAction())

        self.tools_menu = self.menuBar().addMenu("&Tools")
        settings_action = QAction("&Settings…", self)
        settings_action.triggered.connect(self.settings_requested)
        self_test_action = QAction("Run &Self-test", self)
        self_test_action.triggered.connect(self.self_test_requested)
        self.tools_menu.addActions([settings_action, self_test_action])

        help_menu = self.menuBar().addMenu("&Help")
        about_action = QAction("&About HealthFM Desktop", self)
        about_action.triggered.connect(self.show_about)
        cards_action = QAction("&Model Cards…", self)
        cards_action.triggered.connect(self.model_cards_requested)
        licenses_action = QAction("Third-party &Licenses and Data Attributions…", self)
        licenses_action.triggered.connect(self.licenses_requested)
        help_menu.addActions([about_action, cards_action, licenses_action])

    def add_workspace(self, name: str, title: str, widget: QWidget) -> None:
        self._names.append(name)
        self.switcher.addItem(title)
        self.stack.addWidget(widget)
        if self.switcher.currentRow() < 0:
            self.switcher.setCurrentRow(0)

    def workspace_names(self) -> list[str]:
        return list(self._names)

    def current_workspace(self) -> str:
        row = self.switcher.currentRow()
        return self._names[row] if 0 <= row < len(self._names) else ""

    def show_workspace(self, name: str) -> None:
        if name in self._names:
            self.switcher.setCurrentRow(self._names.index(name))

    def workspace_widget(self, name: str) -> QWidget:
        return self.stack.widget(self._names.index(name))

    # --- feedback -----------------------------------------------------------------------
    def set_provider(self, text: str) -> None:
        self.provider_label.setText(f"Provider: {text}")

    def show_progress(self, fraction: float | None, message: str = "", busy: bool = True) -> None:
        if not busy:
            self.progress_bar.hide()
            return
        self.progress_bar.show()
        if fraction is None:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * max(0.0, min(1.0, fraction))))
        if message:
            self.statusBar().showMessage(message, 5000)

    def set_busy(self, source: str, busy: bool) -> None:
        """The progress bar shows while any workspace (``source``) has a job running."""
        (self._busy_sources.add if busy else self._busy_sources.discard)(source)
        self.show_progress(None, busy=bool(self._busy_sources))

    def show_message(self, level: str, text: str) -> None:
        self.statusBar().showMessage(text.splitlines()[0], 8000)
        self.last_message = (level, text)
        if level in ("error", "warning"):
            # non-blocking, so a message never stalls the event loop (or a headless test)
            icon = QMessageBox.Icon.Critical if level == "error" else QMessageBox.Icon.Warning
            box = QMessageBox(icon, "HealthFM Desktop", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def set_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for path in paths:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda checked=False, p=path: self.paths_requested.emit([p]))
        self.recent_menu.setEnabled(bool(paths))

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About HealthFM Desktop",
            f"<b>HealthFM Desktop {__version__}</b><p>Offline medical AI workstation: DICOM viewer, "
            "clinical-note annotator, molecule panel and patient view. Runs entirely on this "
            "computer; no data leaves it unless you configure a PACS.</p>"
            "<p>Not a certified medical device: every model result is decision support to be "
            "checked by a qualified person.</p>",
        )

    # --- geometry -----------------------------------------------------------------------
    def save_geometry(self, settings) -> None:
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.setValue("window/workspace", self.current_workspace())

    def restore_geometry(self, settings) -> None:
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        workspace = settings.value("window/workspace")
        if workspace:
            self.show_workspace(str(workspace))

    # --- files --------------------------------------------------------------------------
    def _ask_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open files")
        if files:
            self.paths_requested.emit(files)

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder")
        if folder:
            self.paths_requested.emit([folder])

    def _ask_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open zip archive", filter="Zip archives (*.zip)")
        if path:
            self.paths_requested.emit([path])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.paths_requested.emit(paths)
        else:
            self.show_message("warning", "Only local files and folders can be dropped here.")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.closing.emit()
        super().closeEvent(event)

    closing = Signal()

