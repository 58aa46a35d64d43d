"""Make docs/studio.png, the README's picture of the studio.

Starts Trainyard in a throwaway DATA_DIR, runs a real script on the local
target, and photographs the run page in Chromium.

    .venv/bin/python docs/screenshot.py
"""

import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services.live_stack import login, start_stack  # noqa: E402

TRAIN = """\
import math, sys, time
from trainyard import run
for epoch in range(1, 13):
    loss = 2.0 * math.exp(-epoch / 4)
    run.log("loss", loss)
    run.log("accuracy", 1 - loss / 2.2)
    print(f"epoch {epoch:2d}  loss {loss:.4f}", flush=True)
    time.sleep(0.2)
print("\\033[32mtraining finished\\033[0m")
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ty-shot-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as z:
                z.writestr("train.py", TRAIN)
            source = Path(tmp) / "mnist.zip"
            source.write_bytes(archive.getvalue())
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=[
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                    ],
                )
                page = browser.new_page(viewport={"width": 1360, "height": 860})
                login(page, stack, "alice")
                page.goto(f"{stack.url}/w/{stack.workspace_slug}/runs/submit/")
                page.get_by_label("Experiment").fill("mnist")
                page.get_by_label("…or an archive").set_input_files(str(source))
                page.get_by_label("Entry script").fill("train.py")
                page.get_by_role("button", name="Submit run").click()
                page.wait_for_selector("text=Completed", timeout=60000)
                time.sleep(1.5)
                page.screenshot(path=str(ROOT / "docs" / "studio.png"))
                browser.close()
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
