"""The viewer's overlay text at 2x (QT_SCALE_FACTOR=2, as on a 2560x1600 screen): the corner
text, orientation letters and scale bar are drawn twice as tall in device pixels, so they stay
as legible as at 1x (checked on the rendered pixels of a real CT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from healthfm_desktop.core.imaging.parallel_decode import PROCESSES_ENV

REPO = Path(__file__).resolve().parents[2]

CODE = """
import json, sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from healthfm_desktop.controllers.images import ImagesController
from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace
controller = ImagesController()
workspace = ImagesWorkspace(controller)
workspace.resize(1100, 700)
workspace.show()
controller.open_paths([Path("tests/data/dicom/single/CT_small.dcm")])
import time
end = time.monotonic() + 60
while time.monotonic() < end and workspace.active_slot().shown is None:
    app.processEvents(); time.sleep(0.01)
viewport = workspace.active_viewport()
image = viewport.grab().toImage()
image.save(sys.argv[1])
# rows (device pixels) of the top-left corner text: bright pixels in the first 200 columns
bright = [y for y in range(image.height() // 3)
          if any(image.pixelColor(x, y).lightness() > 200 for x in range(int(200 * image.devicePixelRatio())))]
print(json.dumps({"ratio": image.devicePixelRatio(), "width": image.width(), "logical": viewport.width(),
                  "text_rows": len(bright), "letters": viewport.edge_letters(), "bar": viewport.scale_bar()}))
controller.cancel_jobs()
sys.stdout.flush()
import os
os._exit(0)  # the result is out: no teardown of the app's pools
"""


def run(scale: str, out: Path) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale,
           "HEALTHFM_HOME": str(out.parent / f"home{scale}"), PROCESSES_ENV: "0"}  # one file: no worker processes
    done = subprocess.run([sys.executable, "-c", CODE, str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_overlay_text_scales_with_the_screen(tmp_path):
    one = run("1", tmp_path / "viewport_1x.png")
    two = run("2", tmp_path / "viewport_2x.png")
    assert one["ratio"] == 1 and two["ratio"] == 2
    assert two["width"] == 2 * two["logical"]
    # the same lines of text, each twice as many device pixels tall (not a 1x bitmap scaled)
    assert one["text_rows"] >= 8
    assert 1.7 <= two["text_rows"] / one["text_rows"] <= 2.3
    assert one["letters"] == two["letters"] and set(one["letters"]) == {"left", "right", "top", "bottom"}
    assert one["bar"] is not None and two["bar"] is not None


def test_series_thumbnails_are_drawn_for_a_2x_screen(qtbot):
    """A 96 px tile at 2x is 192 device pixels: the thumbnail has them (it was 96, scaled up soft)."""
    import numpy as np
    import pydicom

    from healthfm_desktop.core.imaging.viewer_session import thumbnail_pixels
    from healthfm_desktop.views.image_viewer.series_browser import THUMBNAIL_SIZE, thumbnail_pixmap

    ct = pydicom.dcmread(REPO / "resources" / "samples" / "dicom" / "CT_head_phantom_6sl" / "I1010.dcm")
    pixels = thumbnail_pixels(ct.pixel_array.astype(np.float32), (40.0, 80.0))
    assert max(pixels.shape[:2]) >= 2 * THUMBNAIL_SIZE
    pixmap = thumbnail_pixmap(pixels, 2.0)
    assert pixmap.devicePixelRatio() == 2.0
    assert max(pixmap.width(), pixmap.height()) == 2 * THUMBNAIL_SIZE
    assert max(pixmap.deviceIndependentSize().width(), pixmap.deviceIndependentSize().height()) == THUMBNAIL_SIZE
