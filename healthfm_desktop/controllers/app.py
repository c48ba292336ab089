"""The application controller: routes opened/dropped paths to workspaces, owns settings,
recent files, the execution-provider status, the self-test and the log relay."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import Job, run_job
from healthfm_desktop.core.config import DEFAULTS
from healthfm_desktop.core.paths import settings_path
from healthfm_desktop.core.routing import IMAGES, route_paths

MAX_RECENT = 10


def open_settings() -> QSettings:
    """QSettings on the INI file that the command line reads too (core.config)."""
    return QSettings(str(settings_path()), QSettings.Format.IniFormat)


def compute_scheduler(settings: QSettings | None = None) -> str:
    """Settings > Compute: "" for this computer, else the Dask scheduler address the molecule
    panel and the batch actions send their work to."""
    from healthfm_desktop.core.cluster import COMPUTE_SETTING

    settings = settings or open_settings()
    settings.sync()  # the Settings dialog writes through another QSettings object
    return str(settings.value(COMPUTE_SETTING, "") or "").strip()


class LogRelay(QObject):
    """Carries log records from any thread to the log panel. Only HealthFM's own loggers are
    relayed, and those never log patient data (names, paths, text): counts and events only."""

    record = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.handler = _RelayHandler(self)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        self.handler.addFilter(lambda rec: rec.name.startswith("healthfm_desktop"))

    def install(self) -> None:
        root = logging.getLogger("healthfm_desktop")
        root.setLevel(logging.INFO)
        if self.handler not in root.handlers:
            root.addHandler(self.handler)

    def uninstall(self) -> None:
        logging.getLogger("healthfm_desktop").removeHandler(self.handler)


class _RelayHandler(logging.Handler):
    def __init__(self, relay: LogRelay):
        super().__init__(logging.INFO)
        self.relay = relay

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.relay.record.emit(self.format(record))
        except RuntimeError:  # relay already deleted at shutdown
            pass


def _run_checks() -> list[tuple[bool, str, str]]:
    from healthfm_desktop.checks import collect_checks, run_checks

    return [(passed, label, detail) for label, passed, detail, _ in run_checks(collect_checks())]


def _provider_status(override: str) -> str:
    from healthfm_desktop.core.inference.runtime import choose_providers

    choice = choose_providers(override)
    return choice.active + (f" ({'; '.join(choice.notes)})" if choice.notes else "")


class AppController(QObject):
    workspace_requested = Signal(str)  # switch the window to this workspace
    message = Signal(str, str)  # level, text
    provider_status = Signal(str)
    recent_changed = Signal(list)
    self_test_finished = Signal(list)  # [(ok, label, detail)]
    routed = Signal(object)  # core.routing.Routing of each open, before the workspaces get it

    log = logging.getLogger("healthfm_desktop.app")

    def __init__(self, workspaces: list[WorkspaceController], settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.workspaces = {w.name: w for w in workspaces}
        self.settings = settings or open_settings()
        self._jobs: set[Job] = set()

    # --- settings -----------------------------------------------------------------------
    def setting(self, key: str) -> str:
        value = self.settings.value(key, DEFAULTS.get(key, ""))
        return "" if value is None else str(value)

    def set_setting(self, key: str, value: str) -> None:
        self.settings.setValue(key, value)
        self.settings.sync()
        if key.startswith("inference/"):
            self.refresh_provider()

    # --- jobs ---------------------------------------------------------------------------
    def _start(self, func, *args, on_result=None) -> Job:
        job = run_job(func, *args, on_result=on_result, on_error=lambda t: self.message.emit("error", t), parent=self)
        self._jobs.add(job)
        job.finished.connect(lambda job=job: self._jobs.discard(job))
        return job

    # --- opening files ------------------------------------------------------------------
    def open_paths(self, paths: list[Path | str]) -> Job:
        """Route by content, hand each group to its workspace, switch to the first one."""
        return self._start(route_paths, [Path(p) for p in paths], True, on_result=self._on_routed)

    def _on_routed(self, routing) -> None:
        self.routed.emit(routing)
        first = None
        for name, paths in routing.by_workspace.items():
            controller = self.workspaces.get(name)
            if controller is None:
                continue
            if name == IMAGES and routing.contents:
                controller.open_paths(paths, read_ahead=routing.contents)  # the sniffed files are not read again
            else:
                controller.open_paths(paths)
            self.add_recent(paths)
            first = first or name
        opened = sum(len(p) for p in routing.by_workspace.values())
        self.log.info("opened %d item(s), %d not recognised", opened, len(routing.rejected))
        if first:
            self.workspace_requested.emit(first)
        if routing.rejected:
            lines = [f"{path.name}: {reason}" for path, reason in routing.rejected]
            self.message.emit("warning", "Some items could not be opened:\n" + "\n".join(lines))

    def recent_paths(self) -> list[str]:
        value = self.settings.value("recent/paths", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, paths: list[Path]) -> None:
        recent = [str(p) for p in paths] + [p for p in self.recent_paths() if p not in map(str, paths)]
        self.settings.setValue("recent/paths", recent[:MAX_RECENT])
        self.recent_changed.emit(recent[:MAX_RECENT])

    # --- inference provider, self-test, model cards ------------------------------------
    def refresh_provider(self) -> None:
        self._start(_provider_status, self.setting("inference/provider"), on_result=self.provider_status.emit)

    def run_self_test(self) -> Job:
        return self._start(_run_checks, on_result=self.self_test_finished.emit)

    def model_cards(self) -> list[tuple[str, str]]:
        """(title, markdown) for every shipped model; a broken manifest is listed as such."""
        from healthfm_desktop.core.inference.registry import load_registry

        registry = load_registry()
        cards = []
        for name in registry.names():
            manifest = registry.manifests[name]
            card = manifest.model_path.with_suffix(".md")
            text = card.read_text(encoding="utf-8") if card.is_file() else f"# {name}\n\nNo model card file."
            if manifest.source == "user":
                # a model the user trained or added: not part of what this build ships and checks
                text = (f"> **User model** from {manifest.model_path.parent}: not shipped with HealthFM; its "
                        "integrity is checked against its own manifest only.\n\n" + text)
                cards.append((f"{name} {manifest.version} [user model]", text))
                continue
            cards.append((f"{name} {manifest.version}", text))
        for name, problem in registry.problems.items():
            cards.append((f"{name} (broken)", f"# {name}\n\n**This model cannot be used:** {problem}"))
        return cards
