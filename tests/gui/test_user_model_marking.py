"""User models are marked as such where the GUI lists models (issue 18, case 11)."""

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
