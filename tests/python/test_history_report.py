"""The backtest report in a real browser: `aiops run` on the built-in simulated account (with
its injected incidents: destructive calls, an ERROR burst, an AccessDenied burst; 40 s, as the
quick-start demo, so a loaded machine still simulates the bursts and the windows after them) writes raw
history; `aiops backtest --report` renders it; headless Chromium (Debian package `chromium`)
loads the file with the network off and the test checks the rendered DOM: one SVG chart per
plotted finding, each with a drawn observed line of many points, the expected band or line,
the score strip, and no reference to anything outside the file. A screenshot is taken too.

Skipped when chromium is not installed (./scripts/test installs it when missing)."""
import json
import os
import re
import shutil
import subprocess

import pytest


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def headless(browser, profile, *args):
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", *args,
    ]


def test_backtest_report_renders_one_chart_per_finding_in_chromium(tmp_path, aiops_bin):
    browser = chromium()
    data = tmp_path / "data"
    run = subprocess.run(
        [aiops_bin, "run", "--duration", "40", "--data-dir", str(data), "--json"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["incidents"] >= 3, summary
    report = tmp_path / "report.html"
    out = subprocess.run(
        [aiops_bin, "backtest", "--history", str(data), "--report", str(report), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    findings = result["findings"]
    kinds = {f["kind"] for f in findings}
    assert "change_rule" in kinds and "rate_anomaly" in kinds, kinds
    plotted = min(len(findings), 200)
    html = report.read_text()
    # Self-contained: no script, no external reference.
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)

    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        headless(browser, profile, "--dump-dom", report.as_uri()),
        capture_output=True, text=True, timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    charts = re.findall(r'<svg class="plot" data-finding="([0-9a-f]+)"(.*?)</svg>', rendered, re.S)
    assert len(charts) == plotted, (len(charts), plotted)
    ids = {f["finding_id"] for f in findings}
    for finding_id, body in charts:
        assert finding_id in ids
        m = re.search(r'<path class="observed" data-points="(\d+)" d="([^"]*)"', body)
        assert m, finding_id
        points = int(m.group(1))
        assert points >= 10, (finding_id, points)
        # The path draws what it says: one M/L command per point.
        assert len(re.findall(r"[ML]-?\d", m.group(2))) == points
        assert 'class="finding"' in body and 'class="score"' in body
        assert 'class="expected"' in body or 'class="band"' in body
    # The table lists every finding; the figures are there.
    assert rendered.count("<tr>") >= len(findings) + 1
    assert 'id="figures"' in rendered

    shot = tmp_path / "report.png"
    png = subprocess.run(
        headless(browser, profile, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars",
                 report.as_uri()),
        capture_output=True, text=True, timeout=120,
    )
    assert png.returncode == 0, png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 20_000
