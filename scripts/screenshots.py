"""Screenshots of each workspace on the bundled demo data, for docs/screenshots/:

    QT_SCALE_FACTOR=1 python scripts/screenshots.py docs/screenshots   # 1280x800
    QT_SCALE_FACTOR=2 python scripts/screenshots.py docs/screenshots   # 2560x1600 (HiDPI)

Each PNG is quantised to 256 colours (PIL) to stay a few hundred KB."""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HEALTHFM_HOME", tempfile.mkdtemp(prefix="healthfm-shots-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wait(app, condition, seconds: float = 120.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def save(window, path: Path, size: tuple[int, int]) -> None:
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    window.grab().save(buffer, "PNG")
    image = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    if image.size != size:  # a minimum size above 1280x800 grows the window past the screen
        least = window.minimumSizeHint()
        raise SystemExit(f"{path.name}: the window is {image.size[0]}x{image.size[1]}, not {size[0]}x{size[1]} "
                         f"(its minimum size is {least.width()}x{least.height()})")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path} {image.size[0]}x{image.size[1]} {path.stat().st_size // 1024} KB")


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from healthfm_desktop.app import build_application, build_main_window
    from healthfm_desktop.core.paths import demo_paths

    app = build_application(sys.argv[:1])
    window = build_main_window()
    window.resize(1280, 800)
    window.show()
    window.app_controller.open_paths(demo_paths())
    controllers = window.controllers
    wait(app, lambda: bool(controllers["images"].series and controllers["molecules"].rows))
    wait(app, lambda: not any(c.busy for c in controllers.values()), 240)
    scale = round(window.devicePixelRatioF())
    pixels = (1280 * scale, 800 * scale)
    size = f"{pixels[0]}x{pixels[1]}"
    images = window.workspace_widget("images")
    head = next((s.key for s in controllers["images"].series if s.frame_count > 1), controllers["images"].series[0].key)
    window.show_workspace("images")
    images.show_series(head, controllers["images"].frame_count(head) // 2)
    wait(app, lambda: images.active_viewport().frame() is not None)
    images.apply_preset_number(1)
    wait(app, lambda: False, 0.5)
    save(window, out / f"images_{size}.png", pixels)
    # Images as the demo opens it (the Data quality dock open when a sample has something to
    # report); the rest with the dock closed, as a user who has read it leaves it
    window.data_quality_dock.hide()
    images.mpr_action.setChecked(True)
    wait(app, lambda: images.mpr_view.volume() is not None, 60)
    wait(app, lambda: False, 0.5)
    save(window, out / f"images_mpr_{size}.png", pixels)
    images.mpr_action.setChecked(False)
    for name in ("notes", "molecules", "patients"):
        window.show_workspace(name)
        wait(app, lambda: False, 1.5)
        save(window, out / f"{name}_{size}.png", pixels)
    molecules = window.workspace_widget("molecules")
    window.show_workspace("molecules")
    molecules.grid_button.click()
    wait(app, lambda: False, 1.5)
    save(window, out / f"molecules_grid_{size}.png", pixels)
    molecules.table_button.click()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
