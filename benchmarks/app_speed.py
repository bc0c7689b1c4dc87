"""Issue 29 targets, in a real browser: the first page of ``promptgen app`` within 5 s, 64 new digits after a seed change within 1 s.

    python benchmarks/app_speed.py [--folder RUNS] [--repeats 5] [--seed-changes 5] [--count 64]

Without ``--folder`` it first trains a tiny digit prompt (``promptgen compose --gen mnist --energy
classifier:digit=3 --steps 30 --check-samples 0 --log none --out TMP/runs/three``, about half a minute)
in a temporary folder, removed at the end. Headless Chromium (Debian's ``/usr/bin/chromium``, through
Playwright, as ``tests/test_app.py`` drives it) is launched once, before any server, as a user's browser is
already open. Then each repeat:

1. starts ``python -m promptgen app FOLDER --port P`` as a fresh process and, from that moment, polls
   ``http://127.0.0.1:P/`` until it answers 200 (``server_answers_s``), then opens the page in a new browser
   context (an empty cache, as a first visit) and waits until the prompt list (``#prompt-list``) shows the
   prompt's name (``page_rendered_s``, from the launch of the process);
2. picks the prompt (``first_sample_s``: its first 64 images a side, loading the prompt included), then sets
   the seed to 1, 2, ... ``--seed-changes`` times and times each until both grids (base and prompt) have a new
   image ``src`` and the images have loaded (``seed_change_s``); ``server_sample_s`` is what the page itself
   says the sampling took (``..., in X s``).

Prints one JSON object a line: one per repeat, then the summary (medians over repeats for start-up, over every
seed change for sampling; the targets and whether each median meets it). ``loadavg`` is ``os.getloadavg()``
when the benchmark (or the repeat) started: this measures wall time on a shared machine, so say what else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TARGET_PAGE_S = 5.0
TARGET_SEED_S = 1.0
PROMPT = "three"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def train(folder: Path) -> float:
    """A tiny digit prompt in ``folder/three``; the seconds it took."""
    argv = [sys.executable, "-m", "promptgen", "compose", "--gen", "mnist", "--energy", "classifier:digit=3",
            "--steps", "30", "--check-samples", "0", "--eval-every", "1000", "--checkpoint-every", "1000",
            "--eval-batch", "64", "--log", "none", "--quiet", "--out", str(folder / PROMPT)]
    t = time.perf_counter()
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"training the prompt failed: {done.stderr[-600:]}")
    return time.perf_counter() - t


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"promptgen app exited with {proc.returncode}: {out[-600:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"promptgen app did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the app stops as on Ctrl+C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: Both grids hold an image whose src differs from the old one, and it has loaded.
NEW_IMAGES = """([old]) => ['#base-grid img', '#prompt-grid img'].every((sel, i) => {
    const img = document.querySelector(sel);
    return img && img.getAttribute('src') && img.getAttribute('src') !== old[i] && img.complete && img.naturalWidth > 0;
})"""


def sources(page) -> list[str | None]:
    return page.evaluate("() => ['#base-grid img', '#prompt-grid img'].map(s => { const i = document.querySelector(s); "
                         "return i ? i.getAttribute('src') : null; })")


def server_seconds(page) -> float | None:
    found = re.search(r"in ([\d.]+) s", page.inner_text("#message p"))
    return float(found.group(1)) if found else None


def repeat(browser, folder: Path, prompt: str, seed_changes: int, count: int, timeout: float) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    row: dict = {"loadavg": loadavg(), "port": port}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    context = browser.new_context(viewport={"width": 1300, "height": 1600})  # an empty cache: a first visit
    page = context.new_page()
    page.set_default_timeout(timeout * 1000)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "promptgen", "app", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        wait_for_server(proc, url, timeout)
        row["server_answers_s"] = round(time.perf_counter() - t0, 3)
        page.goto(url)
        page.wait_for_function("(name) => { const l = document.querySelector('#prompt-list'); "
                               "return l && l.innerText.includes(name); }", arg=prompt)
        row["page_rendered_s"] = round(time.perf_counter() - t0, 3)

        if count != 64:
            box = page.locator("#count input[type=number]")
            box.fill(str(count))
            box.press("Tab")
        old = sources(page)
        t = time.perf_counter()
        box = page.locator("#prompt-choice input")
        box.click()
        box.fill(prompt)
        box.press("Enter")
        page.wait_for_function(NEW_IMAGES, arg=[old])
        row["first_sample_s"] = round(time.perf_counter() - t, 3)

        changes, said = [], []
        seed = page.locator("#seed input")
        for k in range(1, seed_changes + 1):
            old = sources(page)
            t = time.perf_counter()
            seed.fill(str(k))
            seed.press("Enter")
            page.wait_for_function(NEW_IMAGES, arg=[old])
            changes.append(round(time.perf_counter() - t, 3))
            page.wait_for_function("(w) => document.querySelector('#message p').innerText.includes(w)",
                                   arg=f"{count} images a side, seed {k}")
            said.append(server_seconds(page))
        row["seed_change_s"] = changes
        row["server_sample_s"] = said
        row["seed_change_median_s"] = round(statistics.median(changes), 3) if changes else None
    finally:
        context.close()
        stop(proc)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, help="serve this folder (it must hold the prompt --prompt); default: train one")
    ap.add_argument("--prompt", default=PROMPT, help="the prompt to pick, by its folder under --folder")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed-changes", type=int, default=5)
    ap.add_argument("--count", type=int, default=64, help="images a side")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for any one thing")
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    head = {"benchmark": "app_speed", "loadavg": loadavg(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "repeats": args.repeats, "seed_changes": args.seed_changes, "count": args.count}
    scratch = None
    try:
        if args.folder is None:
            scratch = Path(tempfile.mkdtemp(prefix="app-speed-"))
            folder = scratch / "runs"
            folder.mkdir()
            head["train_s"] = round(train(folder), 1)
        else:
            folder = args.folder.resolve()
            if not (folder / args.prompt / "manifest.json").is_file():
                raise SystemExit(f"no prompt {args.prompt!r} under {folder}: give --prompt, or leave out --folder to train one")
        head["folder"] = str(folder)
        rows = []
        with sync_playwright() as p:
            t = time.perf_counter()
            browser = p.chromium.launch(executable_path=args.chromium,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            head["browser_launch_s"] = round(time.perf_counter() - t, 3)
            try:
                for i in range(args.repeats):
                    row = {"repeat": i, **repeat(browser, folder, args.prompt, args.seed_changes, args.count, args.timeout)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                browser.close()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    changes = [s for r in rows for s in r["seed_change_s"]]
    said = [s for r in rows for s in r["server_sample_s"] if s is not None]
    page_s = median("page_rendered_s")
    seed_s = round(statistics.median(changes), 3) if changes else None
    summary = {
        **head, "summary": True,
        "server_answers_median_s": median("server_answers_s"),
        "page_rendered_median_s": page_s, "page_rendered_best_s": min(r["page_rendered_s"] for r in rows),
        "first_sample_median_s": median("first_sample_s"),
        "seed_change_median_s": seed_s, "seed_change_max_s": max(changes) if changes else None,
        "server_sample_median_s": round(statistics.median(said), 3) if said else None,
        "target_page_s": TARGET_PAGE_S, "page_target_met": page_s <= TARGET_PAGE_S,
        "target_seed_change_s": TARGET_SEED_S, "seed_target_met": seed_s is not None and seed_s <= TARGET_SEED_S,
        "loadavg_end": loadavg(),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
