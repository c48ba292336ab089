"""The sha256 of every shipped model file (ONNX, manifest, side files), frozen into the code of
this build: a manifest beside a model can be rewritten along with the model, this list cannot
without rebuilding the app. Regenerate after retraining: ``python -m
healthfm_desktop.core.inference.shipped_digests`` (``write_manifest`` does it for shipped models)."""

from __future__ import annotations

import hashlib
from pathlib import Path

# files in models/ that are documentation, not loaded: left out of the list
_NOT_LOADED = (".md", ".png")

SHIPPED_SHA256: dict[str, str] = {
    "esol_solubility.json": "3d27e5db861f88ef6605a326a21dc16edeabf25b0c54b71e1b7902b452f6f8cd",
    "esol_solubility.onnx": "1f11e3b2a2980d416fbf734266126e2897d4dadd083664fcf835592684a6da89",
    "esol_solubility_ad.npz": "bbfb4a3bc4879fabae95acf5ba639e0238476393aa4c92f73a2ad3f8fff71426",
    "hc18_unet.json": "f909a21a3f0ea114cf8d7b035f786455b7259fd32912757996f620d22d303a58",
    "hc18_unet.onnx": "2e24defe5cb4e56b14cb19a4c87fd4d1b4803159d2600f78ebba95582dd72669",
    "hc18_unet_int8.json": "16f1081906ed4fa48af7f6c55314bbaa1bcda7ecb1c8ce3ad4d2d43b8f78959c",
    "hc18_unet_int8.onnx": "566d5e6829e44267da90a3a02f1cd5c58fd07506aeab3c541faf065fbb4d4b3f",
    "hc18_unet_scope.npz": "034f738e55f42b5e8d2822055e0dd57df548f9a0f53330bf3960ee2b7a8ae3f0",
    "hc18_unet_scope_embedding.npz": "9eea4a37996565252bb69a17b937f9946600df987ab0ba7caeeee8e5a83230d9",
    "icu_mortality.json": "cc34b496af9b0f8c29c22109d2165f1c060c7a400f7eab061c9454008e20cc24",
    "icu_mortality.onnx": "dfb099966182ba2e0f91c99fa9a01ea29e65050cfc5941fd7ba019890b7bb37a",
    "image_encoder.json": "ba7178f45f0ecb9665e2d8b3d1bd5826ffbe7a2f27cb58b5d65fedb07f8c0e96",
    "image_encoder.onnx": "ee76d826dded55337d8b2dc7679aac39facc33935fcb1006f3d74d37c6f49ad8",
    "ner_clinical.json": "e44f22e0aca243ee648622c5b74d19e4d1dae971896debfb068fa69f6245167d",
    "ner_clinical.onnx": "4555ec5af156d66395d46b31c44f49cd494e5ae856ab727935b5a889600bf395",
    "pneumonia_resnet.json": "40e8a8353712471f3ac7bdff540a1be6b18a5c4f7f42cab576256582d3935f65",
    "pneumonia_resnet.onnx": "fb47d35bd5c2b01703dd017162de5c79d6bbc79c678c30eae5b82e4201e61e15",
    "pneumonia_resnet_int8.json": "08effa03841ab188afaf2d7e7728951f7c918e7cdcae0afa506432e25b2a30a3",
    "pneumonia_resnet_int8.onnx": "c0f22fc93268fe9c4c6ae7942d19375fb0897dc240595b0f0e886a7bdd3f8fdc",
    "pneumonia_resnet_scope.npz": "a7a4b0bd0ba1c719d54bf1f15c86f16a493536f754656c17fb75d0f0f7b35de0",
    "pneumonia_resnet_scope_embedding.npz": "223adedfc82308bd52638ee9312b90d91059504ab0b4ed762c9d12b152d3f92a",
    "smiles_generator.json": "6e6fe7ac9b78b4b1b33fd589d3650eea01213927e33fb4afe20ffffa94e3ff11",
    "smiles_generator.onnx": "4e9c514ba2ad7f7f552c7bedbb511dcfe1675727a1f8586393e319b2f50d1a49",
    "text_encoder.json": "688ffca37100b914b919f3e03b7f4b38ad513e4344383eba271eb12ec64284fe",
    "text_encoder.onnx": "fd5560fa79a27d40524fd074af7fafeb3099015893a7ceea3148d2c59c16700a",
    "text_encoder.tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tox21_multitask.json": "4c3e3212e357be80c3eb012e3ce23220da00b858ffa6ef836dff591bc06e42a4",
    "tox21_multitask.onnx": "cbe50c984198f3f05243118173bf3d67995c2144859bb29b1466a86cb73a18a1",
    "tox21_multitask_ad.npz": "857549f1b0cef014aef37017efc4293224e79df04ef961a46082810c564e6670",
}


def digests_of(folder: Path) -> dict[str, str]:
    """sha256 of every loaded file directly in ``folder`` (the shipped models folder)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() not in _NOT_LOADED:
            with open(path, "rb") as handle:
                found[path.name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found


def write_module(folder: Path) -> None:
    """Rewrite this module's SHIPPED_SHA256 from ``folder``."""
    from healthfm_desktop.core.storage.atomic import atomic_write_text

    module = Path(__file__)
    text = module.read_text(encoding="utf-8")
    start = text.index("SHIPPED_SHA256: dict[str, str] = {")
    end = text.index("\n}\n", start) + 3
    body = "".join(f'    "{name}": "{digest}",\n' for name, digest in digests_of(folder).items())
    atomic_write_text(module, text[:start] + "SHIPPED_SHA256: dict[str, str] = {\n" + body + "}\n" + text[end:])


if __name__ == "__main__":
    from healthfm_desktop.core.paths import models_dir

    write_module(models_dir())
    print(f"froze the digests of the files in {models_dir()}")
