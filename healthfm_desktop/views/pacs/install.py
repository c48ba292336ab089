"""Put PACS into the main window: Tools ▸ "PACS query/retrieve…", a PACS page in Settings,
and the local study browser as a side panel of the Images workspace."""

from __future__ import annotations

from PySide6.QtGui import QAction

from healthfm_desktop.views.pacs.peers_page import PeersPage, connect_peers_page
from healthfm_desktop.views.pacs.query_dialog import QueryRetrieveDialog, connect_query_dialog
from healthfm_desktop.views.pacs.study_browser import StudyBrowser, connect_study_browser


def install_pacs(window, controller):
    """``controller``: a controllers.pacs.PacsController (built by app.py, so that views never
    import the networking stack, not even through a controller module)."""
    images_controller = controller.images
    controller.message.connect(window.show_message)
    window.pacs_controller = controller

    action = QAction("PACS &query/retrieve…", window)
    action.setObjectName("pacsQueryAction")
    window.tools_menu.addAction(action)
    window.pacs_action = action

    def open_dialog() -> None:
        dialog = getattr(window, "pacs_dialog", None)
        if dialog is None:
            dialog = QueryRetrieveDialog(controller.peers(), window)
            connect_query_dialog(dialog, controller)
            window.pacs_dialog = dialog
        dialog.show()
        dialog.raise_()

    action.triggered.connect(open_dialog)
    # a retrieved study opens in Images: show that workspace behind the dialog
    controller.retrieve_finished.connect(
        lambda ok, _text: window.show_workspace("images") if ok and controller.open_after_retrieve else None)

    def add_settings_page() -> None:
        # runs after the app's own handler has built window.settings_dialog
        dialog = getattr(window, "settings_dialog", None)
        if dialog is None or not hasattr(dialog, "add_page") or getattr(dialog, "pacs_page", None):
            return
        page = PeersPage(controller.peers(), controller.own_ae_title(), controller.storage_port(),
                         controller.scp_running)
        connect_peers_page(page, controller)
        dialog.add_page("PACS", page)
        dialog.pacs_page = page

    window.settings_requested.connect(add_settings_page)

    workspace = window.workspace_widget("images")
    if hasattr(workspace, "add_side_panel"):
        browser = StudyBrowser()
        connect_study_browser(browser, controller)
        workspace.add_side_panel("Studies", browser)
        window.study_browser = browser
        controller.search_local()
    if images_controller is not None and hasattr(images_controller, "import_finished"):
        # files opened or dropped in Images go into the local study database too, once their
        # pixels are decoded: run beside the decode, its header reads held the GIL and made the
        # UI's worst stall of a drop (benchmarks/bench_viewer.py, whole window)
        waiting = []

        def index_when_idle(*_args) -> None:
            if waiting and not images_controller.busy:
                waiting.clear()
                controller.index_opened_series(list(images_controller.series))

        images_controller.import_finished.connect(lambda _summary: (waiting.append(True), index_when_idle()))
        images_controller.busy_changed.connect(lambda busy: None if busy else index_when_idle())
    window.closing.connect(controller.shutdown)
    controller.load_networking()
    return controller
