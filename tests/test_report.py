"""`promptgen report`: one self-contained HTML page, checked as a file and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.composing import compose
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")
PNG_PREFIX = "data:image/png;base64,"

# Injected into a copy of the report: after every image has loaded (or failed to),
# record on <body> how many decoded, per class, and each image's natural width.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0);
  const b = document.body.dataset;
  b.total = imgs.length;
  b.decoded = ok.length;
  for (const c of ["grid", "histogram", "curves"]) {
    b[c + "Total"] = imgs.filter((i) => i.classList.contains(c)).length;
    b[c + "Decoded"] = ok.filter((i) => i.classList.contains(c)).length;
  }
  b.widths = JSON.stringify(Object.fromEntries(imgs.map((i) => [i.id, i.naturalWidth])));
  b.probed = "yes";
});
</script>"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


class Page(HTMLParser):
    """The tags and attributes of a page, and the text of <script id="eval-json">."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.body: dict[str, str] = {}
        self._in_json = False
        self.eval_json = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "body":
            self.body = a
        self._in_json = tag == "script" and a.get("id") == "eval-json"

    def handle_endtag(self, tag):
        self._in_json = False

    def handle_data(self, data):
        if self._in_json:
            self.eval_json += data

    def imgs(self, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img" and (cls is None or cls in a.get("class", "").split())]


def decode_png(src: str) -> Image.Image:
    assert src.startswith(PNG_PREFIX), src[:40]
    img = Image.open(io.BytesIO(base64.b64decode(src[len(PNG_PREFIX) :])))
    img.load()
    return img


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    compose(
        "mnist", ["classifier:digit=3"], root / "three",
        train=TrainConfig(steps=3, batch_size=8, eval_every=1, checkpoint_every=3, fit_samples=16, eval_batch=16),
        flow={"transforms": 1, "hidden": 8}, progress=False, preview=0,
    )
    out = root / "report.html"
    result = run("report", root / "three", "-o", out, "-n", 200, "--seed", 1, "--attr", "digit*digit", "-q")
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    return out


def test_report_is_one_self_contained_page(report_file):
    text = report_file.read_text(encoding="utf-8")
    page = Page(text)
    # Nothing is fetched: no external scripts, styles, fonts or images.
    for tag, a in page.tags:
        for key in ("src", "href"):
            assert not a.get(key, "").startswith(("http:", "https:", "//", "file:")), (tag, a.get(key, "")[:80])
        assert not (tag == "link" and a.get("rel") == "stylesheet")
        assert not (tag == "script" and "src" in a)
    assert "<style>" in text and "@import" not in text and "url(" not in text

    report = json.loads(page.eval_json)
    assert report["format"] == "promptgen-eval" and report["n"] == 200 and report["seed"] == 1
    attributes = [a["attribute"] for a in report["attributes"]]
    assert attributes == ["digit", "digit*digit"]

    for img in page.imgs():
        assert img.get("alt"), img.get("id")
        decode_png(img["src"])
    grids = {a["id"]: decode_png(a["src"]) for a in page.imgs("grid")}
    assert set(grids) == {"grid-base", "grid-prompt"}
    for grid in grids.values():
        # 64 digits of 28 px, 8 a row with 2 px padding, drawn 4× with nearest neighbour.
        assert grid.size == ((8 * 30 + 2) * 4, (8 * 30 + 2) * 4)
        pixels = np.asarray(grid)
        assert pixels.std() > 20  # digits, not a blank
        assert np.array_equal(pixels[::4, ::4].repeat(4, 0).repeat(4, 1), pixels)  # blocks of 4×4 equal pixels
    histograms = page.imgs("histogram")
    assert sorted(a["data-attribute"] for a in histograms) == sorted(attributes)
    assert len({a["id"] for a in histograms}) == len(histograms)
    (curves,) = page.imgs("curves")
    assert curves["id"] == "curves" and decode_png(curves["src"]).size[0] > 300

    # The numbers and the manifest are on the page, the figures with their 95 % intervals.
    assert "share of asked classes" in text and "classifier:digit=3" in text
    assert "95% intervals, a bootstrap over the 200 samples of each side" in text
    assert all(len(a[side]["histogram_ci"]) == len(a["labels"]) for a in report["attributes"] for side in ("base", "prompt"))
    # The flags at the top, after the verdict: the 3-step prompt missed its target.
    flags = [a for t, a in page.tags if t == "li" and "flag" in a.get("class", "").split()]
    assert [f["data-kind"] for f in flags] == [f["kind"] for f in report["flags"]] and "missed" in [f["kind"] for f in report["flags"]]
    assert text.index('id="verdict"') < text.index('id="warnings"') < text.index('id="energies"')
    assert '"format": "promptgen-prompt"' in text.replace("&quot;", '"')


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium to render the HTML report in: install it with `apt-get install chromium` (Debian/Ubuntu)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish within 180 s: {' '.join(cmd)}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_report_renders_in_headless_chromium(report_file, tmp_path):
    text = report_file.read_text(encoding="utf-8")
    page = Page(text)
    expected_widths = {a["id"]: decode_png(a["src"]).size[0] for a in page.imgs()}
    n_attributes = len(json.loads(page.eval_json)["attributes"])

    probed = tmp_path / "probed.html"
    assert text.count("</body>") == 1
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    body = Page(dom).body
    assert body.get("data-probed") == "yes", dom[:500]
    assert int(body["data-total"]) == len(expected_widths) > 0
    assert int(body["data-decoded"]) == int(body["data-total"]), body  # every image decoded
    assert int(body["data-grid-decoded"]) == 2
    assert int(body["data-histogram-decoded"]) >= n_attributes
    assert int(body["data-curves-decoded"]) == 1
    assert json.loads(body["data-widths"]) == expected_widths

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars", report_file.as_uri())
    assert shot.exists(), "Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20  # not a blank page
    # The sample grids are white digits on black: the top of the page has large dark areas.
    assert (pixels[:1500] < 30).mean() > 0.05


def test_report_output_errors(report_file, tmp_path):
    prompt = report_file.parent / "three"
    for out, words in ((tmp_path / "r.txt", ".html"), (tmp_path / "missing" / "r.html", "does not exist"), (tmp_path, "folder")):
        result = run("report", prompt, "-o", out, "-n", 10, "-q")
        assert result.exit_code == 2, result.output
        text = result.output.strip()
        assert text.startswith("error:") and len(text.splitlines()) == 1 and words in text, text
    result = run("report", prompt, "-o", tmp_path / "r.html", "-n", 10, "--attr", "nope", "-q")
    assert result.exit_code == 2 and "--attr" in result.output
    assert not (tmp_path / "r.html").exists()


def test_histograms_carry_error_bars_and_curves_draw_each_step():
    from promptgen.evaluation.report import curves_png, histogram_png
    from promptgen.evaluation.results import AttributeEval, AttributeSide

    def side(ci):
        return AttributeSide(histogram=[0.2, 0.3, 0.5], histogram_ci=ci)

    a = AttributeEval(attribute="digit", labels=["0", "1", "2"], origin="asked", base=side(None), prompt=side(None))
    wide = [(0.0, 0.6), (0.0, 0.7), (0.1, 0.95)]
    b = a.model_copy(update={"base": side(wide), "prompt": side(wide)})
    plain, bars = (np.asarray(decode_png("data:image/png;base64," + base64.b64encode(histogram_png(x)).decode())) for x in (a, b))
    assert plain.shape == bars.shape and (plain != bars).any()  # the error bars are drawn

    history = [{"step": 100.0, "loss": 2.0, "e": 1.0}, {"step": 200.0, "loss": 1.5, "e": 0.5}]
    steps = [{"step": float(i), "loss": 3.0 - i / 100, "e": 1.5 - i / 200} for i in range(1, 201)]
    without, with_steps = curves_png(history, ["e"]), curves_png(history, ["e"], steps)
    assert without != with_steps
    # Only the step history knows a term: its panel is drawn from it alone.
    only = curves_png([{"step": 100.0, "loss": 2.0}], ["e"], steps)
    assert decode_png("data:image/png;base64," + base64.b64encode(only).decode()).size[0] > decode_png(
        "data:image/png;base64," + base64.b64encode(curves_png([{"step": 100.0, "loss": 2.0}], ["e"])).decode()
    ).size[0]
