"""``distill view`` in a real headless browser: Debian's chromium, driven by Playwright through
that binary (no browser download). Skipped without chromium, except under CI=true, where
.ci/run installs it and a missing browser is a failure.

With ``DISTILL_SCREENSHOTS=DIR`` the tests also save the screenshots the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.critics.labels import read_labels

try:
    from fault_server import FaultServer
    from test_view import Server, built, run  # noqa: F401  (the same run folder fixtures)
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer
    from tests.test_view import Server, built, run  # noqa: F401

CHROMIUM = next((p for p in (os.environ.get("DISTILL_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
SHOTS = os.environ.get("DISTILL_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        msg = "no chromium binary (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must run the browser tests")
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 820})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.set_default_timeout(15000)
    yield pg
    ctx.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def test_browse_kept_and_rejected_with_reasons_and_filter_by_reason(run, page):
    with Server(run) as s:
        page.goto(s.url("/"))
        page.wait_for_selector("body[data-ready]")
        page.wait_for_selector("#l-funnel tbody tr")
        assert page.locator("#l-funnel tbody tr").first.inner_text().startswith("generated")
        shot(page, "live")
        page.click("nav button[data-tab=browse]")
        page.wait_for_selector("#b-table tbody tr")
        verdicts = set(page.locator("#b-table tbody td:first-child").all_inner_texts())
        assert verdicts == {"kept", "rejected"} or "kept" in verdicts
        page.select_option("#b-form select[name=verdict]", "rejected")
        page.wait_for_function("[...document.querySelectorAll('#b-table tbody td:first-child')]"
                               ".every(td => td.textContent === 'rejected')")
        whys = page.locator("#b-table tbody td:nth-child(4)").all_inner_texts()
        assert whys and all(w.strip() for w in whys)  # every rejected record says why
        page.select_option("#b-form select[name=reason]", "copy")
        page.wait_for_function("document.querySelector('#b-meta').textContent.includes('records match')"
                               " && [...document.querySelectorAll('#b-table tbody td:nth-child(4)')]"
                               ".every(td => td.textContent.includes('copy'))")
        n = page.locator("#b-table tbody tr").count()
        want = s.json("/api/records?verdict=rejected&reason=copy")["total"]
        assert n == min(want, 50) and n > 0
        shot(page, "browse")
        page.click("nav button[data-tab=corpus]")
        page.wait_for_selector("#c-plots img")
        page.wait_for_function("[...document.querySelectorAll('#c-plots img')].every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator("#c-splits tbody tr").count() == 3
        shot(page, "corpus")


def test_label_five_pairs_with_the_keyboard(run, page):
    with Server(run) as s:
        page.goto(s.url("/"))
        page.wait_for_selector("body[data-ready]")
        page.click("nav button[data-tab=label]")
        shown = []
        for keys in (["p"], ["c"], ["m", "1", "6", "Enter"], ["d"], ["p"]):
            page.wait_for_function("document.querySelector('#lb-x').textContent.length > 0")
            meta = page.locator("#lb-meta").inner_text()
            shown.append((page.locator("#lb-x").inner_text(), page.locator("#lb-y").inner_text()))
            if keys[0] == "m":
                page.keyboard.press("m")
                page.keyboard.press("1")
                page.keyboard.press("6")
                shot(page, "label")
                page.keyboard.press("Enter")
            else:
                page.keyboard.press(keys[0])
            page.wait_for_function(f"document.querySelector('#lb-meta').textContent !== {json.dumps(meta)}")
        rows = read_labels(run / "labels.jsonl")  # what `distill critic train` reads
        assert [r.letter for r in rows] == ["P", "C", "M", "D", "P"]
        assert rows[2].kinds == ("added", "time")
        assert [(r.x, r.y) for r in rows] == shown  # each label belongs to the pair that was on screen
        assert "5 of 80 pairs labelled" in page.locator("#lb-meta").inner_text()


def test_judge_a_sheet_blind(run, page):
    sheet = run / "eval" / "sheet" / "sheet.jsonl"
    with Server(run) as s:
        page.goto(s.url("/"))
        page.wait_for_selector("body[data-ready]")
        page.click("nav button[data-tab=judge]")
        page.wait_for_function("document.querySelector('#j-x').textContent.length > 0")
        body = page.content()
        assert "student" not in body and "teacher" not in body  # systems hidden
        shot(page, "judge")
        first = page.locator("#j-y").inner_text()
        page.keyboard.press("p")
        page.wait_for_function("document.querySelector('#j-status').textContent === 'saved P'")
        page.keyboard.press("m")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#j-meta').textContent.includes('2 judged')")
    rows = [json.loads(line) for line in sheet.read_text().splitlines()]
    judged = [r for r in rows if r["label"]]
    assert [r["label"] for r in judged] == ["P", "M"] and judged[1]["kinds"] == ["dropped"]
    assert judged[0]["y"] == first


def test_live_page_follows_a_running_generate(tmp_path, page):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"Sentence {i} says the council met on day {i}.\n" for i in range(60)))
    out = tmp_path / "live"
    with FaultServer(delay=0.25) as teacher:
        cmd = [sys.executable, "-m", "distill.cli", "generate", "--no-progress", "--set", "task.name=paraphrase_instruct",
               "--set", f"task.inputs={seeds}", "--set", "task.k=2", "--set", "shards.items_per_shard=6",
               "--set", "teacher.backend=openai", "--set", "teacher.model=fake", "--set", "teacher.openai.mode=chat",
               "--set", f"teacher.openai.base_url={teacher.url}", "--set", "teacher.openai.concurrency=2", "-o", str(out)]
        gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (out / "manifest.json").is_file():
                assert gen.poll() is None and time.monotonic() < deadline, gen.stderr.read() if gen.poll() else ""
                time.sleep(0.05)
            with Server(out, poll_s=0.3) as s:
                page.goto(s.url("/"))
                page.wait_for_selector("body[data-ready]")
                page.wait_for_function("/^[0-9,]+$/.test(document.querySelector('#l-samples').textContent)")
                before = int(page.locator("#l-samples").inner_text().replace(",", ""))
                page.wait_for_function(f"Number(document.querySelector('#l-samples').textContent.replace(/,/g, '')) "
                                       f">= {before + 6}", timeout=30000)
                assert page.locator("#l-status").inner_text() == "running"
                assert page.locator("#l-newest li").count() > 0
                shot(page, "live-running")
            assert gen.wait(120) == 0
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
