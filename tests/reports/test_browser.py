"""A report page in a real browser: headless Chromium loads it offline, decodes every image, paints it.

Needs Debian's ``chromium`` (``make chromium`` installs it as root; ``.ci/run`` does so before the
tests); without it the test is skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmpo.reports import write_reports
from mmpo.reports.html import THUMBNAIL

from .helpers import BLUE, RED, chair_record, document, solid_image

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed; `make chromium` (as root) installs it"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# writes each image's decoded width into the DOM once the page (images included) has loaded
PROBE = (
    "<script>addEventListener('load', () => {"
    " for (const image of document.images) image.dataset.naturalWidth = image.naturalWidth;"
    " document.body.dataset.loaded = 'yes'; });</script>"
)


def chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1400", *mode, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_page_renders_with_every_image_loaded(tmp_path):
    records = [
        chair_record(
            "s1",
            solid_image(tmp_path / "red.png", RED),
            "A red cube and a blue ball.",
            ["blue ball"],
            ["red cube"],
        ),
        chair_record("s2", solid_image(tmp_path / "blue.png", BLUE), "A blue cube.", [], ["blue cube"]),
    ]
    page, _ = write_reports(document(records), tmp_path / "report", items=24, seed=0)
    (tmp_path / "red.png").unlink()  # the page must not need the image files any more
    (tmp_path / "blue.png").unlink()

    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(probed, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-loaded="yes"' in dom.stdout
    widths = re.findall(r'<img [^>]*data-natural-width="(\d+)"', dom.stdout)
    assert widths == [str(THUMBNAIL)] * 2  # both images decoded at their thumbnail size

    screenshot = tmp_path / "page.png"
    shot = chromium(page, tmp_path / "profile", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert pixels.std() > 20  # not a blank page
    for colour in (RED, BLUE):  # each thumbnail painted: a patch of its exact colour (within 8 levels)
        close = (np.abs(pixels - np.array(colour)) <= 8).all(axis=-1)
        assert close.sum() > (THUMBNAIL // 2) ** 2
