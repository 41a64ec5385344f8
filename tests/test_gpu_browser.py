"""The GPU Monitor in a real headless Chromium on `streamlit run`: it refreshes on its own."""

from __future__ import annotations

import re

from conftest import wait_until

LAST_SAMPLE = re.compile(r"Last sample \d\d:\d\d:\d\d \(#(\d+)\)")


def test_gpu_page_refreshes_live(browser, app_server, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{app_server}/GPU_Monitor")
        page.get_by_text(LAST_SAMPLE).wait_for()
        # No GPU on CI: the plain notice; the host metrics still show.
        if page.get_by_text("No GPU available").count():
            page.get_by_text("host CPU and RAM are shown below", exact=False).wait_for()
        seen: set[int] = set()

        def new_sample_shown() -> bool:
            match = LAST_SAMPLE.search(page.get_by_text(LAST_SAMPLE).inner_text())
            seen.add(int(match.group(1)))
            return len(seen) >= 3

        # Three different samples without any click: the fragment's run_every redraws the page.
        wait_until(new_sample_shown, 30, 0.2, "the page to refresh by itself")
        cpu = page.locator('[data-testid="stMetric"]').filter(has_text=re.compile(r"^CPU"))
        wait_until(lambda: re.search(r"\d+\.\d%", cpu.inner_text()), 10, 0.2, "a CPU reading")
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(tmp_path / "gpu_monitor.png"), full_page=True)
    finally:
        context.close()
