"""`promptgen app` (issue 29): the library behind the page, the command, and the page itself in headless Chromium.

The browser tests start ``promptgen app`` as a user would (a process serving a folder of tiny prompts) and drive
it with Playwright in Debian's Chromium (``/usr/bin/chromium``; no browser download). Each takes a screenshot and
asserts on the page's content.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from promptgen.app import check_port
from promptgen.app.library import EVAL_CACHE, Library, histograms, summary, write_downloads
from promptgen.artifacts.manifest import file_sha256
from promptgen.artifacts.prompt import build_generator, load_prompt, sample_images, sweep_images
from promptgen.composing import compose
from promptgen.core.errors import PromptgenError
from promptgen.training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TINY = {"flow": {"transforms": 1, "hidden": 8}, "progress": False, "preview": 0}


def tiny_train(steps: int, lr: float = 3e-3) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=16, eval_every=1000, checkpoint_every=1000, fit_samples=16, eval_batch=16,
                       lr=lr, check_samples=0, guard="off")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A served folder: an unconditional digit prompt, a conditional slant prompt, a broken one; and a prompt outside it."""
    top = tmp_path_factory.mktemp("app")
    root = top / "runs"
    compose("mnist", ["classifier:digit=3"], root / "three", train=tiny_train(15), **TINY)
    compose("mnist", ["slant", "digit-id"], root / "nested" / "slant", train=tiny_train(30, 1e-2), conditions="slant=-0.3:0.3", **TINY)
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    shutil.copytree(root / "three", top / "outside")
    (root / "link-out").symlink_to(top / "outside")
    return root


# --- the library: list, paths, sampling, sweeps, evaluations, downloads ---------------------------------------


def test_the_list_shows_each_prompt_and_a_broken_one_with_its_reason(runs):
    rows = {r.name: r for r in Library(runs).scan()}
    assert set(rows) == {"three", "nested/slant", "broken"}  # the link to outside is not entered
    three = rows["three"]
    assert three.ok and three.generator == "mnist" and three.energies == ["classifier:digit=3@100"] and three.seconds > 0
    assert three.created.endswith("UTC") and three.cells()[-1] == "ok"
    assert rows["nested/slant"].conditions == ["slant -0.3:0.3"]
    assert not rows["broken"].ok and "is not valid JSON" in rows["broken"].error and "\n" not in rows["broken"].error


FIRST_LIST = """
import json, sys
from promptgen.app.library import Library
from promptgen.app.ui import build
library = Library(sys.argv[1])
rows = library.scan(weights=False)
build(library)  # the page, its first list included
print(json.dumps({"cells": {r.name: r.cells() for r in rows}, "pending": [r.name for r in rows if r.pending],
                  "loaded": sorted(m for m in ("torch", "safetensors", "promptgen.artifacts.manifest") if m in sys.modules)}))
"""


def test_the_first_list_is_read_from_the_manifests_without_importing_torch(runs):
    """Issue 29: the page's first list is each manifest read as plain JSON; torch waits for the checked list."""
    done = subprocess.run([sys.executable, "-c", FIRST_LIST, str(runs)], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first["loaded"] == [], first["loaded"]
    assert sorted(first["pending"]) == ["nested/slant", "three"]
    checked = {r.name: r.cells() for r in Library(runs).scan()}
    assert set(first["cells"]) == set(checked)
    for name in ("three", "nested/slant"):  # the same cells as once checked, but the status
        assert first["cells"][name][:-1] == checked[name][:-1] and first["cells"][name][-1] == "checking its weights…"
    assert first["cells"]["broken"][-1].startswith("broken: ") and "is not valid JSON" in first["cells"]["broken"][-1]


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"format": "promptgen-prompt"}', ["invalid at generator.spec"]),
        ('{"format": "promptgen-prompt", "generator": {"spec": "mnist"}, "energies": [{"spec": "x"}]}', ["invalid at energies.0"]),
        ('{"format": "promptgen-prompt", "generator": {"spec": "mnist"}, "energies": []}', ["invalid at training.seconds"]),
        ('[1, 2]', ["is not a promptgen manifest"]),
        ('{"format": "promptgen-prompt", "format_version": 7}', ["newer prompt format"]),
        ("\xff", ["not UTF-8"]),
    ],
)
def test_a_manifest_lacking_what_the_first_list_shows_is_broken_in_one_line(tmp_path, text, words):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_bytes(text.encode("latin-1"))
    (row,) = Library(tmp_path).scan(weights=False)
    assert not row.ok and not row.pending and "\n" not in row.error and all(w in row.error for w in words), row.error
    (full,) = Library(tmp_path).scan()
    assert not full.ok


def test_the_first_lists_constants_are_the_manifests():
    from promptgen.app import library
    from promptgen.artifacts import manifest

    assert (library.MANIFEST, library.FORMAT, library.FORMAT_VERSION, library.MAX_MANIFEST_BYTES) == (
        manifest.MANIFEST, manifest.FORMAT, manifest.FORMAT_VERSION, manifest.MAX_MANIFEST_BYTES)


@pytest.mark.parametrize(
    "name, words",
    [
        ("../outside", ["is outside"]),
        ("/etc", ["is outside"]),
        ("link-out", ["is outside", "it is a link to"]),
        ("nothing-here", ["no folder 'nothing-here'"]),
        ("", ["no prompt chosen"]),
        ("three/manifest.json", ["is a file"]),
        ("a\x00b", ["not a folder name"]),
    ],
)
def test_paths_outside_the_folder_or_wrong_are_refused_in_one_line(runs, name, words):
    with pytest.raises(PromptgenError) as info:
        Library(runs).load(name)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_chain_whose_parent_lies_outside_is_refused(runs, tmp_path):
    root = tmp_path / "served"
    compose("prompt:" + str(runs / "three"), ["classifier:digit=3"], root / "child", train=tiny_train(2), **TINY)
    row = Library(root).scan()[0]
    assert not row.ok and "not under" in row.error and str(runs / "three") in row.error
    with pytest.raises(PromptgenError, match="move both prompts into it"):
        Library(root).load("child")
    assert Library(runs.parent).load("runs/three") is not None  # served from above, both are inside


def test_a_missing_folder_is_one_line():
    with pytest.raises(PromptgenError, match="does not exist"):
        Library("/nonexistent/runs")


def test_base_and_prompt_share_the_noise_as_sample_and_eval_draw_it(runs):
    lib = Library(runs)
    pair = lib.sample("three", 6, 4)
    assert torch.allclose(pair.prompt, sample_images(load_prompt(runs / "three"), 6, seed=4), atol=1e-6)
    assert torch.allclose(pair.base, sample_images(build_generator("mnist"), 6, seed=4), atol=1e-6)
    assert not torch.allclose(pair.base, pair.prompt)
    with pytest.raises(PromptgenError, match="count must be from 1 to"):
        lib.sample("three", 0, 0)
    with pytest.raises(PromptgenError, match="seed must be"):
        lib.sample("three", 2, 2**70)


def test_a_condition_moves_the_images_and_a_sweep_is_the_clis(runs):
    lib = Library(runs)
    low, high = lib.sample("nested/slant", 8, 0, {"slant": -0.3}), lib.sample("nested/slant", 8, 0, {"slant": 0.3})
    prompt = load_prompt(runs / "nested" / "slant")
    assert torch.allclose(high.prompt, sample_images(prompt, 8, seed=0, condition={"slant": 0.3}), atol=1e-6)
    assert float((high.prompt - low.prompt).abs().max()) > 0.02
    assert lib.sample("nested/slant", 2, 0, {"slant": 9.0}).condition == {"slant": 0.3}  # clipped to the training range
    images, values = lib.sweep("nested/slant", 3, "slant", 4, 1)
    assert values == pytest.approx([-0.3, -0.1, 0.1, 0.3])
    assert torch.allclose(images, sweep_images(prompt, 3, "slant", values, seed=1), atol=1e-6)
    with pytest.raises(PromptgenError, match="no condition 'yaw'"):
        lib.sweep("nested/slant", 3, "yaw", 4, 1)
    with pytest.raises(PromptgenError, match="trained without conditions"):
        lib.sweep("three", 3, "slant", 4, 1)


def test_the_evaluation_is_cached_in_the_prompt_folder_by_the_weights_checksum(runs):
    lib = Library(runs)
    report, cached = lib.evaluation("three", 100, 3)
    sha = file_sha256(runs / "three" / "flow.safetensors")
    path = runs / "three" / EVAL_CACHE.format(sha=sha[:32], n=100, seed=3)
    assert not cached and path.is_file() and not list((runs / "three").glob(".*.tmp"))
    again, cached = lib.evaluation("three", 100, 3)
    assert cached and again == report
    assert [a.attribute for a in report.attributes] == ["digit"] and report.base.junk_rate is not None
    plots = histograms(report)
    assert len(plots) == 1 and plots[0][0].startswith(b"\x89PNG")
    lines = summary(report)
    assert lines[0].startswith("junk rate: base ") and any(line.startswith("digit: base: asked ") for line in lines)
    path.write_text("damaged")  # a damaged cache is computed again
    fresh, cached = lib.evaluation("three", 100, 3)
    assert not cached and fresh.attributes == report.attributes and fresh.created >= report.created


def test_downloads_are_the_grid_and_the_samples(runs, tmp_path):
    lib = Library(runs)
    pair = lib.sample("nested/slant", 5, 2, {"slant": 0.1})
    png, npz = write_downloads(lib.load("nested/slant"), pair, "nested/slant", tmp_path)
    assert png.name == "nested-slant-seed2-slant0.1.png" and Image.open(png).size[0] >= 28 * 5
    with np.load(npz) as f:
        assert f["images"].shape == (5, 1, 28, 28) and f["base"].shape == (5, 1, 28, 28) and int(f["seed"]) == 2
        assert np.allclose(f["images"], pair.prompt.numpy())


# --- the command -----------------------------------------------------------------------------------------------


def run_cli(*args: str, prelude: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom promptgen.cli import main\nsys.argv = ['promptgen', *{list(args)!r}]\nmain()"
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_promptgen_does_not_import_gradio_unless_the_app_runs():
    code = ("import sys, promptgen, promptgen.api, promptgen.cli, promptgen.app, promptgen.app.library\n"
            "from promptgen.cli import app\nassert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_without_gradio_the_app_says_what_to_install_in_one_line(runs):
    result = run_cli("app", str(runs), prelude="import sys; sys.modules['gradio'] = None")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'promptgen-core[app]'" in lines[0], result.stderr


def test_the_app_extra_and_the_test_extra_name_gradio():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("gradio") for r in extras["app"])
    assert any(r.startswith("gradio") for r in extras["test"]) and any(r.startswith("playwright") for r in extras["test"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_port_in_use_and_a_missing_folder_are_one_line(runs, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PromptgenError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)
        result = run_cli("app", str(runs), "--port", str(port))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and f"port {port}" in result.stderr, result.stderr
    result = run_cli("app", str(tmp_path / "none"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "does not exist" in result.stderr, result.stderr


# --- the page in headless Chromium -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(runs):
    """``promptgen app RUNS --port P`` in its own process, until the module's tests are done."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "promptgen", "app", str(runs), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"promptgen app exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > 120:
                pytest.fail("promptgen app did not answer within 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "no Chromium: install it with `apt-get install chromium` (Debian/Ubuntu)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 1600})
    page.set_default_timeout(60_000)
    page.goto(server)
    page.wait_for_selector("#prompt-list")
    yield page
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    page.close()


def pick(page, name: str) -> None:
    box = page.locator("#prompt-choice input")
    box.click()
    box.fill(name)
    box.press("Enter")


def src(page, element: str) -> str | None:
    img = page.locator(f"#{element} img")
    return img.first.get_attribute("src") if img.count() else None


def wait_for_new(page, element: str, old: str | None) -> str:
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel); return i && i.getAttribute('src') && i.getAttribute('src') !== old; }",
        arg=[f"#{element} img", old],
    )
    new = src(page, element)
    assert new is not None
    return new


def test_the_page_lists_the_prompts_and_the_broken_one(page):
    text = page.inner_text("#prompt-list")
    assert "three" in text and "nested/slant" in text and "classifier:digit=3@100" in text and "slant -0.3:0.3" in text
    assert "broken: " in text and "is not valid JSON" in text


def test_pick_a_prompt_change_the_seed_see_new_images_and_download_them(page, tmp_path):
    pick(page, "three")
    first = wait_for_new(page, "prompt-grid", None)
    base = src(page, "base-grid")
    assert base is not None and base != first
    assert "64 images a side, seed 0" in page.inner_text("#message p")
    seed = page.locator("#seed input")
    seed.fill("7")
    seed.press("Enter")
    second = wait_for_new(page, "prompt-grid", first)
    assert second != first and src(page, "base-grid") != base
    page.wait_for_function("() => document.querySelector('#message p').innerText.includes('seed 7')")
    with page.expect_download() as png:
        page.locator("#download-png").click()
    assert png.value.suggested_filename == "three-seed7.png"
    png.value.save_as(tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").format == "PNG"
    with page.expect_download() as npz:
        page.locator("#download-npz").click()
    npz.value.save_as(tmp_path / "samples.npz")
    with np.load(tmp_path / "samples.npz") as f:
        assert f["images"].shape == (64, 1, 28, 28) and f["base"].shape == (64, 1, 28, 28) and int(f["seed"]) == 7


def test_move_a_condition_slider_and_see_the_images_change(page):
    pick(page, "nested/slant")
    first = wait_for_new(page, "prompt-grid", None)
    assert "slant (trained on -0.3 to 0.3)" in page.inner_text("#cond-0")
    assert not page.locator("#cond-1").is_visible()
    slider = page.locator("#cond-0 input[type=number]")
    slider.fill("0.3")
    slider.press("Tab")  # the number box releases the slider when it loses the focus
    second = wait_for_new(page, "prompt-grid", first)
    assert second != first
    page.wait_for_function("() => document.querySelector('#message p').innerText.includes('slant=0.3')")
    page.get_by_role("tab", name="Sweep").click()
    page.locator("#sweep").click()
    wait_for_new(page, "sweep-grid", None)
    assert "columns: slant = -0.3" in page.inner_text("#sweep-caption")


def test_open_the_evaluation_and_see_the_histogram_plots(page):
    pick(page, "three")
    wait_for_new(page, "prompt-grid", None)
    page.get_by_role("tab", name="Evaluation").click()
    n = page.locator("#eval-n input")
    n.fill("200")
    n.press("Tab")
    page.locator("#evaluate").click()
    page.wait_for_selector("#histograms img")
    text = page.inner_text("#eval-summary")
    assert "junk rate: base" in text and "digit: base:" in text
    assert "evaluation of 200 samples a side" in page.inner_text("#message p")


def test_a_bad_path_is_one_line_in_the_page_and_the_app_keeps_running(page):
    for bad, words in (("../../etc", "is outside"), ("broken", "is not valid JSON")):
        pick(page, bad)
        page.wait_for_function("(w) => document.querySelector('#message p').innerText.includes(w)", arg=words)
        text = page.inner_text("#message p").strip()
        assert text.startswith("error: ") and "\n" not in text
    pick(page, "three")
    wait_for_new(page, "prompt-grid", None)
    assert "error" not in page.inner_text("#message p")


def test_the_server_hands_out_no_file_it_was_not_asked_for(server, runs):
    for path in (runs / "three" / "manifest.json", Path("/etc/passwd"), ROOT / "pyproject.toml"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server}gradio_api/file={path}", timeout=10)
        assert info.value.code in (403, 404)


# --- composing from the page: the queue --------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.3)


def test_the_queue_runs_compose_one_at_a_time_and_refuses_mistakes_in_one_line(tmp_path):
    from promptgen.app.training import TrainingQueue

    root = tmp_path / "served"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "out").symlink_to(tmp_path / "elsewhere")
    queue = TrainingQueue(Library(root))
    try:
        for args, words in [
            (("mnist", "classifier:digit=", "", 5, "a"), "malformed spec 'classifier:digit=' at character 18: expected a value after 'digit='"),
            (("mnist", "", "", 5, "a"), "at least one energy spec"),
            (("", "classifier:digit=3", "", 5, "a"), "give a generator spec"),
            (("mnist", "classifier:digit=3", "", 0, "a"), "steps must be from 1"),
            (("mnist", "classifier:digit=3", "", 5, "../x"), "give a folder name under the served folder"),
            (("mnist", "classifier:digit=3", "", 5, "/tmp/x"), "give a folder name under the served folder"),
            (("mnist", "classifier:digit=3", "", 5, "out/x"), "leads outside"),
            (("mnist", "classifier:digit=3", "", 5, ""), "give the new prompt a name"),
            ((f"prompt:{tmp_path / 'elsewhere'}", "classifier:digit=3", "", 5, "a"), "is outside"),
            (("prompt:../elsewhere", "classifier:digit=3", "", 5, "a"), "is outside"),
            (("prompt:out", "classifier:digit=3", "", 5, "a"), "is outside"),
        ]:
            with pytest.raises(PromptgenError) as info:
                queue.submit(*args)
            assert words in str(info.value) and "\n" not in str(info.value)
        first = queue.submit("mnist", "classifier:digit=3@50", "", 20, "three", check_samples=0)
        second = queue.submit("mnist", "classifier:digit=3", "", 20, "sub/three-b", check_samples=0)
        bad = queue.submit("mnist", "classifier:nothing=3", "", 20, "bad", check_samples=0)
        with pytest.raises(PromptgenError, match="already queued"):
            queue.submit("mnist", "classifier:digit=3", "", 20, "three")
        assert [j.state for j in queue.snapshot()][1:] == ["queued", "queued"] and "waits for" in queue.snapshot()[2].message
        wait_until(lambda: all(j.state in ("done", "failed") for j in queue.snapshot()))
    finally:
        queue.stop()
    jobs = {j.number: j for j in queue.snapshot()}
    assert jobs[first.number].state == "done" and jobs[second.number].state == "done" and queue.finished == 3
    assert jobs[first.number].losses and jobs[first.number].step == 20
    failed = jobs[bad.number]
    assert failed.state == "failed" and failed.message.startswith("error: ") and "nothing" in failed.message
    rows = {r.name: r for r in Library(root).scan()}
    assert rows["three"].ok and rows["three"].energies == ["classifier:digit=3@50"] and rows["sub/three-b"].ok
    assert not list((tmp_path / "elsewhere").iterdir())


def fill(page, element: str, text: str) -> None:
    box = page.locator(f"#{element}").locator("textarea, input").first
    box.fill(text)
    box.press("Tab")


def test_compose_a_30_step_prompt_from_the_form_watch_it_finish_and_find_it_in_the_list(page):
    page.get_by_role("tab", name="Compose").click()
    fill(page, "new-name", "composed/three")
    fill(page, "new-energies", "classifier:digit=3")
    fill(page, "new-steps", "30")
    fill(page, "new-check", "0")
    page.locator("#train").click()
    page.wait_for_function("() => document.querySelector('#message p').innerText.includes('composed/three')")
    page.wait_for_function("() => document.querySelector('#jobs').innerText.includes('done')", timeout=240_000)
    assert "30/30" in page.inner_text("#jobs")
    page.wait_for_selector("#loss-curve img")
    page.wait_for_function("() => document.querySelector('#prompt-list').innerText.includes('composed/three')")
    pick(page, "composed/three")
    page.get_by_role("tab", name="Samples").click()
    wait_for_new(page, "prompt-grid", None)


def test_a_malformed_energy_spec_is_the_clis_one_line_in_the_page_and_the_app_keeps_serving(page, runs):
    page.get_by_role("tab", name="Compose").click()
    fill(page, "new-name", "never")
    fill(page, "new-energies", "classifier:digit=")
    page.locator("#train").click()
    page.wait_for_function("() => document.querySelector('#message p').innerText.startsWith('error:')")
    shown = page.inner_text("#message p").strip()
    cli = run_cli("compose", "--gen", "mnist", "--energy", "classifier:digit=", "--steps", "3", "--out", str(runs / "never"))
    assert cli.returncode == 2 and shown == cli.stderr.strip() and "\n" not in shown, (shown, cli.stderr)
    assert not (runs / "never").exists()
    pick(page, "three")
    wait_for_new(page, "prompt-grid", None)
