"""Where GUI tests save the widget grabs a developer opens to look at the UI:
$HEALTHFM_SCREENSHOTS, else the system's temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SCREENSHOTS = Path(os.environ.get("HEALTHFM_SCREENSHOTS", tempfile.gettempdir()))
SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # a grab saved to a missing folder fails silently
