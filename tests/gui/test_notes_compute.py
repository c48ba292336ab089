"""The Compute setting in the Notes workspace: with a Dask scheduler address, pre-annotating the
notes a user opens runs on that cluster (a 2-worker LocalCluster on loopback here), gives the same
entities as on this computer, and the job's progress names the cluster."""

from __future__ import annotations

import pytest

from healthfm_desktop.controllers.notes import NotesController
from healthfm_desktop.views.record_annotator.workspace import NotesWorkspace

pytestmark = pytest.mark.slow
NOTES = ("discharge_summary.txt",)


def _annotated(qtbot, tmp_path, name: str, notes: list) -> tuple[dict, list[str]]:
    controller = NotesController(project_path=tmp_path / f"{name}.hfmnotes")
    view = NotesWorkspace(controller)
    qtbot.addWidget(view)
    messages: list[str] = []
    controller.progress.connect(lambda progress: messages.append(progress.message or ""))
    with qtbot.waitSignal(controller.annotation_finished, timeout=240_000):
        controller.open_paths(notes)
    entities = {n: [(e.start, e.end, e.label, e.negated, e.uncertain, e.historical, e.family, e.section)
                    for e in controller.note(n).entities if e.source != "gold"] for n in controller.project.note_ids()}
    return entities, messages


def test_pre_annotation_on_the_cluster_equals_local(qtbot, tmp_path, repo_root, dask_scheduler, compute):
    notes = [repo_root / "resources" / "samples" / "notes" / name for name in NOTES]
    notes += sorted((repo_root / "tests" / "data" / "text" / "brat").glob("*.txt"))[:6]
    compute("")
    local, local_messages = _annotated(qtbot, tmp_path, "local", notes)
    compute(dask_scheduler)
    remote, remote_messages = _annotated(qtbot, tmp_path, "remote", notes)
    assert len(local) == len(notes) and sum(map(len, local.values())) > 20
    assert remote == local
    assert local_messages and not any("Dask" in m for m in local_messages)
    assert any("on the Dask cluster at" in m for m in remote_messages), remote_messages[-3:]
