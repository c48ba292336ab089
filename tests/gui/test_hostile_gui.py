"""The GUI side of issue 18: user models are marked where models are listed (case 11); the
storage SCP the GUI starts listens on loopback and takes the allow-list from Settings (case 10)."""

from __future__ import annotations

import json
import shutil

from healthfm_desktop.core.paths import packaged_models_dir


def test_user_models_are_marked_in_the_model_cards(tmp_path, monkeypatch, qtbot):
    from healthfm_desktop.controllers.app import AppController

    user = tmp_path / "home" / "models"
    user.mkdir(parents=True)
    for path in (packaged_models_dir()).iterdir():
        if path.name.startswith("esol_solubility") and path.suffix in (".onnx", ".json", ".npz"):
            shutil.copy(path, user / path.name.replace("esol_solubility", "my_solubility"))
    manifest = json.loads((user / "my_solubility.json").read_text())
    manifest.update(name="my_solubility", file="my_solubility.onnx")
    (user / "my_solubility.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    titles = dict(AppController([]).model_cards())
    (title,) = [t for t in titles if t.startswith("my_solubility")]
    assert title.endswith("[user model]") and titles[title].startswith("> **User model** from")
    assert not any(t.startswith("esol_solubility") and "user" in t for t in titles)


def test_settings_dialog_edits_the_receive_address_and_allow_list(qtbot, tmp_path):
    from healthfm_desktop.views.dialogs import SettingsDialog

    dialog = SettingsDialog({"dicom/allowed_calling_aets": "pacs; modality1"})
    qtbot.addWidget(dialog)
    dialog.resize(560, 300)
    dialog.show()
    dialog.grab().save(str(tmp_path / "settings.png"))
    values = dialog.values()
    assert values["dicom/scp_bind_address"] == "127.0.0.1"
    assert values["dicom/allowed_calling_aets"] == "PACS, MODALITY1"


def test_gui_storage_scp_uses_loopback_and_the_allow_list(qtbot, tmp_path, monkeypatch):
    from healthfm_desktop.controllers.pacs import PacsController
    from healthfm_desktop.core.imaging.pacs import AssociationRejectedError, DicomPeer, Timeouts, echo
    from healthfm_desktop.core.storage.studies import StudyDatabase
    from tests.orthanc import free_port

    import pytest

    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    (home / "settings.ini").write_text(f"[dicom]\nstorage_port={port}\nallowed_calling_aets=PACS\n")
    monkeypatch.setenv("HEALTHFM_HOME", str(home))
    controller = PacsController(database=StudyDatabase(tmp_path / "db.sqlite"), store_dir=tmp_path / "store")
    messages = []
    controller.scp_state_changed.connect(lambda on, text: messages.append((on, text)))
    assert controller.start_storage_scp()
    try:
        assert controller._scp.bind_address == "127.0.0.1"
        fast = Timeouts(connect=2, acse=3, dimse=5, network=5)
        assert echo(DicomPeer("HEALTHFM", "127.0.0.1", port), "PACS", timeouts=fast)
        with pytest.raises(AssociationRejectedError):
            echo(DicomPeer("HEALTHFM", "127.0.0.1", port), "INTRUDER", timeouts=fast)
    finally:
        controller.stop_storage_scp()
    assert messages[0][0] is True
