"""Build the QApplication and the main window, and wire controllers to views."""

from __future__ import annotations

import gc
import logging
import logging.handlers
import os
import sys
import warnings
from pathlib import Path

from PySide6.QtCore import QThreadPool, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from healthfm_desktop import __version__
from healthfm_desktop.controllers.app import AppController, LogRelay, open_settings
from healthfm_desktop.controllers.images import ImagesController
from healthfm_desktop.controllers.molecules import MoleculesController
from healthfm_desktop.controllers.notes import NotesController
from healthfm_desktop.controllers.patients import PatientsController
from healthfm_desktop.core.paths import demo_paths, resources_dir, user_data_dir
from healthfm_desktop.views.dialogs import DocumentsDialog, SelfTestDialog, SettingsDialog
from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace
from healthfm_desktop.views.main_window import MainWindow
from healthfm_desktop.views.molecule_panel.workspace import MoleculesWorkspace
from healthfm_desktop.views.patient_view.workspace import PatientsWorkspace
from healthfm_desktop.views.record_annotator.workspace import NotesWorkspace
from healthfm_desktop.views.theme import apply_viewer_theme

# (controller class, view class), in the order of the workspace switcher
WORKSPACES = [
    (ImagesController, ImagesWorkspace),
    (NotesController, NotesWorkspace),
    (MoleculesController, MoleculesWorkspace),
    (PatientsController, PatientsWorkspace),
]
SETTING_KEYS = ("inference/provider", "inference/quantized", "dicom/ae_title", "dicom/storage_port",
                "compute/scheduler")


def build_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv)
        app.setApplicationName("HealthFM Desktop")
        app.setOrganizationName("HealthFM")
        app.setApplicationVersion(__version__)
        app.setDesktopFileName("healthfm")  # the .deb's healthfm.desktop: the shell shows its icon
        app.setWindowIcon(QIcon(str(resources_dir() / "icons" / "healthfm.png")))
    return app


def _license_documents() -> list[tuple[str, str]]:
    folder = resources_dir() / "licenses"
    documents = []
    for path in sorted(folder.glob("*.md")):
        title = path.stem.replace("_", " ").title()
        documents.append((title, path.read_text(encoding="utf-8")))
    return documents


def _install_image_analysis(window: MainWindow, controllers: list) -> None:
    """The AI analysis panel (image classifier / head segmenter) inside the Images workspace."""
    from healthfm_desktop.controllers.image_ai import ImageAnalysisController
    from healthfm_desktop.views.image_viewer.analysis_panel import install_image_analysis

    images = next(c for c in controllers if c.name == "images")
    analysis = ImageAnalysisController(images, parent=images)
    install_image_analysis(window.workspace_widget("images"), analysis)


def _install_data_quality(window: MainWindow) -> None:
    """The Data quality dock: every opened file or folder gets its report (images from what the
    Images workspace read, so no file is read twice for it)."""
    from healthfm_desktop.controllers.data_quality import DataQualityController
    from healthfm_desktop.views.data_quality_panel import install_data_quality

    controller = DataQualityController(parent=window)
    install_data_quality(window, controller)
    window.app_controller.routed.connect(controller.check)
    controller.follow_images(window.controllers["images"])


def _install_pacs(window: MainWindow) -> None:
    """PACS: Tools > query/retrieve, a PACS page in Settings, the study browser in Images."""
    from healthfm_desktop.controllers.pacs import PacsController
    from healthfm_desktop.views.pacs.install import install_pacs

    install_pacs(window, PacsController(window.controllers["images"], parent=window))


def build_main_window() -> MainWindow:
    """The whole application: main window, controllers, wiring. Tests use this too."""
    window = MainWindow()
    controllers = []
    for controller_class, view_class in WORKSPACES:
        controller = controller_class(parent=window)
        view = view_class(controller)
        window.add_workspace(controller.name, controller.title, view)
        # a workspace's status lines are its own: shown while it is the current one
        controller.message.connect(lambda level, text, c=controller: window.show_message(level, text, source=c.name))
        controller.progress.connect(lambda p, c=controller: window.show_progress(p.fraction, p.message, busy=c.busy,
                                                                                 source=c.name))
        controller.busy_changed.connect(lambda busy, c=controller: window.set_busy(c.name, busy))
        controllers.append(controller)

    _install_image_analysis(window, controllers)
    app_controller = AppController(controllers, open_settings(), parent=window)
    window.app_controller = app_controller
    window.controllers = app_controller.workspaces
    _install_data_quality(window)
    window.controllers["patients"].follow_notes(window.controllers["notes"])  # notes on the ICU timeline

    window.paths_requested.connect(app_controller.open_paths)
    app_controller.workspace_requested.connect(window.show_workspace)
    app_controller.message.connect(window.show_message)
    app_controller.provider_status.connect(window.set_provider)
    app_controller.recent_changed.connect(window.set_recent)
    window.set_recent(app_controller.recent_paths())

    relay = LogRelay(window)
    relay.record.connect(window.append_log)
    relay.install()
    window.log_relay = relay

    def edit_settings() -> None:
        dialog = SettingsDialog({key: app_controller.setting(key) for key in SETTING_KEYS}, window)
        window.settings_dialog = dialog
        dialog.accepted.connect(lambda: [app_controller.set_setting(k, v) for k, v in dialog.values().items()])
        dialog.open()

    def run_self_test() -> None:
        dialog = SelfTestDialog(window)
        window.self_test_dialog = dialog
        job = app_controller.run_self_test()
        job.result.connect(dialog.show_results)
        dialog.open()

    def show_documents(title: str, documents) -> None:
        dialog = DocumentsDialog(title, documents, window)
        window.documents_dialog = dialog
        dialog.open()

    images_view = window.workspace_widget("images")
    dark = app_controller.setting("appearance/dark_viewer") != "false"
    apply_viewer_theme(images_view, dark)
    window.dark_viewer_action.setChecked(dark)

    def choose_theme(dark: bool) -> None:
        apply_viewer_theme(images_view, dark)
        app_controller.set_setting("appearance/dark_viewer", "true" if dark else "false")

    window.viewer_theme_requested.connect(choose_theme)

    window.settings_requested.connect(edit_settings)
    _install_pacs(window)  # after edit_settings: its Settings page joins the dialog just built
    window.self_test_requested.connect(run_self_test)

    def show_models() -> None:
        from healthfm_desktop.controllers.adaptation import AdaptationController
        from healthfm_desktop.views.models.dialog import ModelsDialog

        ModelsDialog(AdaptationController(window), window).show()

    window.models_requested.connect(show_models)
    window.model_cards_requested.connect(lambda: show_documents("Model cards", app_controller.model_cards()))
    window.licenses_requested.connect(
        lambda: show_documents("Third-party licenses and data attributions", _license_documents())
    )

    def on_close() -> None:
        window.save_geometry(app_controller.settings)
        app_controller.settings.sync()
        relay.uninstall()
        # let running jobs stop before their controllers go: a job that finishes after its
        # QObject is deleted raises "Signal source has been deleted" in the worker thread
        for controller in controllers:
            controller.cancel_jobs()
        QThreadPool.globalInstance().waitForDone(5000)

    window.closing.connect(on_close)
    window.restore_geometry(app_controller.settings)
    app_controller.refresh_provider()
    # Everything built so far lives as long as the app: move it out of the cyclic collector's
    # sight, so a full collection (100+ ms over a heap holding Qt, numpy, spaCy...) does not
    # freeze the UI later. Reference counting still frees what is released.
    gc.collect()
    gc.freeze()
    return window


#: libraries whose warnings can quote DICOM header values (patient data): logged without text
_DICOM_LIBRARIES = ("pydicom", "pynetdicom", "highdicom", "pylibjpeg", "gdcm")


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    source = Path(filename).parts
    library = next((part for part in source if part in _DICOM_LIBRARIES), None)
    text = f"{category.__name__} from {library} (text withheld: it may quote patient data)" if library \
        else f"{category.__name__}: {message} ({Path(filename).name}:{lineno})"
    logging.getLogger("healthfm_desktop.warnings").warning(text)


def configure_gui_logging(folder: Path | None = None) -> Path:
    """The GUI's log: a file in the user's data folder (logs/healthfm.log, rotated), which also
    receives the libraries' warnings (pydicom, medspaCy...) instead of the console; the
    console keeps errors only. Returns the log file."""
    folder = folder or user_data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "healthfm.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setLevel(logging.ERROR)
    root = logging.getLogger()
    root.handlers[:] = [handler, console]
    root.setLevel(logging.INFO)
    warnings.showwarning = _warning_to_log
    qInstallMessageHandler(_qt_message_to_log)
    return path


def _qt_message_to_log(mode, _context, message: str) -> None:
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.WARNING}.get(mode, logging.ERROR)
    logging.getLogger("healthfm_desktop.qt").log(level, message)


def run_gui(args) -> int:
    """`healthfm gui [PATH...]`; with --demo (or HEALTHFM_DEMO=1) opens the bundled samples."""
    configure_gui_logging()
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        print("healthfm gui: no display found (DISPLAY/WAYLAND_DISPLAY unset); run it from a desktop session, "
              "or use the command-line subcommands", file=sys.stderr)
        return 1
    from healthfm_desktop.core.storage.atomic import remove_stale_temporaries

    # autosaves and settings whose writes a crash or kill -9 interrupted left temporaries (the
    # received-DICOM store is left out: too big to list here, and its writes are not durable)
    for folder in (user_data_dir(), user_data_dir() / "measurements"):
        remove_stale_temporaries(folder)
    app = build_application(sys.argv[:1])
    window = build_main_window()
    window.show()
    paths = [Path(p) for p in getattr(args, "paths", []) or []]
    if getattr(args, "demo", False):
        paths += demo_paths()
    if paths:
        window.app_controller.open_paths(paths)
    if getattr(args, "quit_after_show", False):
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, window.close)
        QTimer.singleShot(0, app.quit)
    status = app.exec()
    QThreadPool.globalInstance().waitForDone(5000)  # jobs started late (after close) end before teardown
    return status


def main() -> int:
    """Entry point of the `healthfm-gui` launcher."""
    from healthfm_desktop.cli import main as cli_main

    return cli_main(["gui", *sys.argv[1:]])
