"""The main window: workspace switcher, menus, status bar with the execution provider, log
panel, drag and drop. It only draws and emits intents; the app controller does the work."""

from __future__ import annotations

import time

from PySide6.QtCore import QByteArray, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
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
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from healthfm_desktop import __version__
from healthfm_desktop.views.shortcuts import shortcut, shortcuts_html, user_guide_html

#: the Open dialog's first filter; its pattern is "*" and DicomNames narrows it, since a name
#: filter cannot say "no extension" (how PACS exports and CD-ROMs name their DICOM files)
DICOM_FILTER = "DICOM: .dcm, .dicom, .ima, .zip, DICOMDIR or no extension (*)"
OPEN_FILTERS = [DICOM_FILTER, "Images (*.png *.jpg *.jpeg)", "Notes (*.txt *.jsonl)",
                "Molecules (*.smi *.smiles *.sdf *.sd *.mol *.csv *.gz)", "Patients (*.csv *.psv)", "All files (*)"]
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".zip")


def is_dicom_file_name(name: str) -> bool:
    """Names the Open dialog's DICOM filter shows (it decides nothing about the content)."""
    lowered = name.lower()
    return lowered == "dicomdir" or lowered.endswith(DICOM_SUFFIXES) or "." not in name.lstrip(".")


class DicomNames(QSortFilterProxyModel):
    """Folders and DICOM-looking names while the DICOM filter is chosen; everything otherwise."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.active = True

    def set_active(self, active: bool) -> None:
        self.active = active
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802 - Qt API
        if not self.active:
            return True
        model = self.sourceModel()
        index = model.index(row, 0, parent)
        return model.isDir(index) or is_dicom_file_name(model.fileName(index))


class MainWindow(QMainWindow):
    paths_requested = Signal(list)  # [str] from drop or File > Open
    settings_requested = Signal()
    self_test_requested = Signal()
    models_requested = Signal()
    model_cards_requested = Signal()
    licenses_requested = Signal()
    #: the user chose the image viewer's colours: True dark, False light
    viewer_theme_requested = Signal(bool)

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
        self.switcher.currentRowChanged.connect(lambda _row: self._show_workspace_status())

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
        #: the status line each workspace posted last ("" = the app's own): text, when it expires
        self._status: dict[str, tuple[str, float]] = {}
        self._status_source = ""
        self._progress_lines: set[str] = set()  # the workspaces whose status line is a job's step
        self._busy_sources: set[str] = set()
        self._build_menus()

    # --- construction -------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_files_action = QAction("&Open Files…", self, shortcut=shortcut("app.open"))
        self.open_files_action.triggered.connect(self._ask_files)
        self.open_folder_action = QAction("Open &Folder…", self)
        self.open_folder_action.triggered.connect(self._ask_folder)
        self.open_zip_action = QAction("Open &Zip Archive…", self)
        self.open_zip_action.triggered.connect(self._ask_zip)
        file_menu.addActions([self.open_files_action, self.open_folder_action, self.open_zip_action])
        self.recent_menu = file_menu.addMenu("&Recent")
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self, shortcut=shortcut("app.quit"))
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        self.view_menu = self.menuBar().addMenu("&View")
        self.view_menu.addAction(self.log_dock.toggleViewAction())
        self.dark_viewer_action = QAction("&Dark Image Viewer", self, checkable=True, checked=True)
        self.dark_viewer_action.setToolTip("Dark colours in the Images workspace (reading rooms); off: light")
        self.dark_viewer_action.toggled.connect(self.viewer_theme_requested)
        self.view_menu.addAction(self.dark_viewer_action)

        self.tools_menu = self.menuBar().addMenu("&Tools")
        settings_action = QAction("&Settings…", self)
        settings_action.triggered.connect(self.settings_requested)
        self.self_test_action = QAction("Run &Self-test", self)
        self.self_test_action.setToolTip("The offline check of `healthfm self-test`: models, workspaces, this window")
        self.self_test_action.triggered.connect(self.self_test_requested)
        self.models_action = QAction("&Models and Adaptation…", self)
        self.models_action.setToolTip("Every model, shipped and yours; train a head on your own labels; export/import")
        self.models_action.triggered.connect(self.models_requested)
        self.tools_menu.addActions([settings_action, self.self_test_action, self.models_action])

        help_menu = self.menuBar().addMenu("&Help")
        about_action = QAction("&About HealthFM Desktop", self)
        about_action.triggered.connect(self.show_about)
        cards_action = QAction("&Model Cards…", self)
        cards_action.triggered.connect(self.model_cards_requested)
        licenses_action = QAction("Third-party &Licenses and Data Attributions…", self)
        licenses_action.triggered.connect(self.licenses_requested)
        self.shortcuts_action = QAction("&Keyboard Shortcuts", self, shortcut=shortcut("app.shortcuts"))
        self.shortcuts_action.triggered.connect(self.show_shortcuts)
        self.guide_action = QAction("&User Guide", self)
        self.guide_action.triggered.connect(self.show_user_guide)
        help_menu.addActions([self.guide_action, self.shortcuts_action])
        help_menu.addSeparator()
        help_menu.addAction(self.self_test_action)  # where a user looks when something seems wrong
        help_menu.addSeparator()
        help_menu.addActions([about_action, cards_action, licenses_action])
        self.help_menu = help_menu

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

    def show_progress(self, fraction: float | None, message: str = "", busy: bool = True, source: str = "") -> None:
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
            self.post_status(message, 5000, source, progress=True)

    def set_busy(self, source: str, busy: bool) -> None:
        """The progress bar shows while any workspace (``source``) has a job running."""
        (self._busy_sources.add if busy else self._busy_sources.discard)(source)
        self.show_progress(None, busy=bool(self._busy_sources))
        if not busy and source in self._progress_lines:
            # a job's last step ("MPR: building the volume") is stale once the job is done
            self._progress_lines.discard(source)
            self._status.pop(source, None)
            if self._status_source == source:
                self.statusBar().clearMessage()

    def post_status(self, text: str, timeout_ms: int, source: str = "", progress: bool = False) -> None:
        """A status line from workspace ``source`` ("" = the app): shown while that workspace is
        the current one, so "MPR: building the volume" never lingers over the Notes; a
        ``progress`` line goes when the workspace's job ends."""
        self._status[source] = (text, time.monotonic() + timeout_ms / 1000)
        (self._progress_lines.add if progress else self._progress_lines.discard)(source)
        if not source or source == self.current_workspace():
            self.statusBar().showMessage(text, timeout_ms)
            self._status_source = source

    def _show_workspace_status(self) -> None:
        name = self.current_workspace()
        text, expires = self._status.get(name, ("", 0.0))
        left = expires - time.monotonic()
        if left > 0:
            self.statusBar().showMessage(text, int(left * 1000))
            self._status_source = name
        elif self._status_source and self._status_source != name:
            self.statusBar().clearMessage()
            self._status_source = ""

    def show_message(self, level: str, text: str, source: str = "") -> None:
        self.post_status(text.splitlines()[0], 8000, source)
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

    def show_shortcuts(self) -> QDialog:
        """Help › Keyboard shortcuts: every key of every workspace, from views/shortcuts.py."""
        return self._show_html("Keyboard shortcuts", shortcuts_html())

    def show_user_guide(self) -> QDialog:
        return self._show_html("User guide", user_guide_html())

    def _show_html(self, title: str, text: str) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle(title)
        dialog.resize(640, 640)
        browser = QTextBrowser(dialog)
        browser.setObjectName("helpText")
        browser.setHtml(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(browser)
        layout.addWidget(buttons)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.help_dialog = dialog
        dialog.open()
        return dialog

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
        self.open_dialog().open()

    def open_dialog(self) -> QFileDialog:
        """File › Open: DICOM names first (a Qt dialog, so the DICOM filter can show files
        without an extension), then the other workspaces' files."""
        dialog = QFileDialog(self, "Open files")
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        names = DicomNames(dialog)
        dialog.setProxyModel(names)
        dialog.setNameFilters(OPEN_FILTERS)
        dialog.filterSelected.connect(lambda chosen: names.set_active(chosen == DICOM_FILTER))
        dialog.filesSelected.connect(lambda files: files and self.paths_requested.emit(list(files)))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.file_dialog = dialog
        return dialog

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

