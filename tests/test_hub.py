"""Prompts on the Hugging Face Hub: `promptgen push` and `hf://OWNER/NAME` (issue 26, item 7).

No network: loading reads a Hub cache this file fills in the Hub's own layout
(``models--OWNER--NAME/blobs``, ``snapshots/COMMIT/...`` links, ``refs/main``)
with ``HF_HUB_OFFLINE=1``; pushing talks to a stand-in for the Hub's HTTP API on
127.0.0.1 (``HF_ENDPOINT``), which answers the calls ``HfApi.create_repo``,
``create_branch`` and ``upload_folder`` make and keeps what was committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.hf_api
import pytest
import torch
from typer.testing import CliRunner

from promptgen.api import load_prompt as api_load_prompt
from promptgen.artifacts.hub import HubError, model_card, parse_hub_ref, prompt_chain
from promptgen.artifacts.manifest import read_manifest
from promptgen.artifacts.prompt import Prompt, build_generator, load_prompt, sample_images
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.testing import one_line_error
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
TINY = {
    "train": TrainConfig(
        steps=3, batch_size=8, eval_every=3, checkpoint_every=3, fit_samples=16, eval_batch=16, check_samples=64
    ),
    "flow": {"transforms": 1, "hidden": 8},
    "progress": False,
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
INSTALL = "pip install huggingface_hub"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """a on mnist (with a sample grid and a closing check), b on prompt:a, c on prompt:b."""
    root = tmp_path_factory.mktemp("prompts")
    compose("mnist", ["classifier:digit=3"], root / "a", preview=16, **TINY)
    compose(f"prompt:{root / 'a'}", ["classifier:thickness=thick"], root / "b", preview=0, **TINY)
    compose(f"prompt:{root / 'b'}", ["classifier:digit=3"], root / "c", preview=0, **TINY)
    return {name: root / name for name in "abc"}


def fill_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, ref: str = "main") -> Path:
    """Lay ``files`` out as huggingface_hub's cache does after a download of ``repo_id`` at ``commit``; the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for relative, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def folder_files(folder: Path, names=("manifest.json", "flow.safetensors", "samples.png")) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """HF_HUB_OFFLINE=1 with an empty Hub cache and promptgen cache under tmp_path; the Hub cache."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "promptgen-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    return cache


class StandIn:
    """What the stand-in Hub received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.created: list[dict] = []
        self.branches: list[str] = []
        self.commits: list[dict] = []
        self.url = ""


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Hub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, dict(self.headers)))
            self.answer(404, {"error": "not in the stand-in"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            state.requests.append(("POST", path, dict(self.headers)))
            parts = path.strip("/").split("/")
            if path == "/api/repos/create":
                payload = json.loads(body)
                state.created.append(payload)
                if payload["name"] == "forbidden":
                    return self.answer(
                        403, {"error": "You don't have the rights to create a model under this namespace"}
                    )
                repo_id = f"{payload.get('organization') or 'me'}/{payload['name']}"
                return self.answer(200, {"url": f"{state.url}/{repo_id}", "name": repo_id, "id": repo_id})
            if path == "/api/validate-yaml":
                return self.answer(200, {})
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self.answer(
                    200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "branch":
                state.branches.append("/".join(parts[5:]))
                return self.answer(200, {})
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(item["value"] for item in lines if item["key"] == "header")
                files = {
                    item["value"]["path"]: base64.b64decode(item["value"]["content"])
                    for item in lines
                    if item["key"] == "file"
                }
                state.commits.append(
                    {
                        "repo": "/".join(parts[2:4]),
                        "revision": "/".join(parts[5:]),
                        "summary": header["summary"],
                        "files": files,
                    }
                )
                return self.answer(
                    200, {"commitUrl": f"{state.url}/{'/'.join(parts[2:4])}/commit/{COMMIT}", "commitOid": COMMIT}
                )
            self.answer(404, {"error": f"{path} is not in the stand-in"})

    return Hub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A stand-in for the Hub's HTTP API on 127.0.0.1, with HF_ENDPOINT pointing at it."""
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token saved by the user is read
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # As if HF_ENDPOINT had been set before huggingface_hub was imported: 0.24 validates the card at the
    # endpoint it read then (hf_api.ENDPOINT), whatever HfApi(endpoint=...) says.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", state.url)
    if hasattr(huggingface_hub.hf_api, "ENDPOINT"):
        monkeypatch.setattr(huggingface_hub.hf_api, "ENDPOINT", state.url)
    yield state
    server.shutdown()
    server.server_close()


# -- loading ------------------------------------------------------------------------------------------------------


def test_a_cached_prompt_loads_offline_and_samples_like_its_folder(chain, offline):
    fill_cache(offline, "alice/threes", {**folder_files(chain["a"]), "README.md": b"# card\n"})
    prompt = load_prompt("hf://alice/threes")
    assert isinstance(prompt, Prompt) and prompt.info.name == "prompt:hf://alice/threes"
    assert torch.equal(sample_images(prompt, 8, seed=3), sample_images(load_prompt(chain["a"]), 8, seed=3))
    # Only what loading needs was copied, as plain files (the cache's links point outside any prompt folder).
    assert sorted(p.name for p in prompt.path.iterdir()) == ["flow.safetensors", "manifest.json"]
    assert not any(p.is_symlink() for p in prompt.path.iterdir())
    assert prompt.path.is_relative_to(Path(os.environ["PROMPTGEN_HOME"]))
    # The Python API and a Path (which makes hf://a/b hf:/a/b) load it too.
    assert torch.equal(
        api_load_prompt("hf://alice/threes").decode(torch.zeros(2, 32)), prompt.decode(torch.zeros(2, 32))
    )
    assert torch.equal(
        load_prompt(Path("hf://alice/threes")).decode(torch.zeros(2, 32)), prompt.decode(torch.zeros(2, 32))
    )


def test_gen_prompt_hf_samples_at_the_cli(chain, offline, tmp_path):
    fill_cache(offline, "alice/threes", folder_files(chain["a"]))
    out = tmp_path / "grid.npz"
    result = run("sample", "--gen", "prompt:hf://alice/threes", "-n", "6", "--seed", "2", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    import numpy as np

    images = torch.from_numpy(np.load(out)["images"])
    assert torch.allclose(images, sample_images(load_prompt(chain["a"]), 6, seed=2), atol=1e-6)
    # A revision: a commit of the cache, quoted because a spec reads @ as a weight.
    other = "f" * 40
    fill_cache(offline, "alice/threes", folder_files(chain["a"]), commit=other, ref="v1")
    assert build_generator(f'prompt:"hf://alice/threes@{other}"').path.name == other
    assert build_generator('prompt:"hf://alice/threes@v1"').path.name == other
    one_line_error(run("sample", "--gen", 'prompt:"hf://alice/threes@v2"', "-o", tmp_path / "x.png"), "alice/threes")


def test_offline_without_a_cached_copy_is_one_line_naming_the_repo(offline, tmp_path):
    line = one_line_error(
        run("sample", "--gen", "prompt:hf://alice/nothing-here", "-o", tmp_path / "x.png"),
        "hf://alice/nothing-here",
        "HF_HUB_OFFLINE",
    )
    assert "cache" in line
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        load_prompt("hf://alice/nothing-here")


def test_a_malformed_manifest_from_the_hub_is_one_line(chain, offline, tmp_path):
    files = folder_files(chain["a"])
    manifest = json.loads(files["manifest.json"])
    manifest["flow"]["transforms"] = "many"
    fill_cache(offline, "alice/broken", {**files, "manifest.json": json.dumps(manifest).encode()})
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/broken", "-o", tmp_path / "x.png"),
        "hf://alice/broken",
        "invalid at flow.transforms",
    )
    fill_cache(offline, "alice/not-json", {**files, "manifest.json": b"{not json"})
    one_line_error(run("sample", "--gen", "prompt:hf://alice/not-json", "-o", tmp_path / "x.png"), "not valid JSON")
    fill_cache(offline, "alice/no-manifest", {"flow.safetensors": files["flow.safetensors"]})
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/no-manifest", "-o", tmp_path / "x.png"),
        "hf://alice/no-manifest",
        "no manifest.json",
    )


def test_weights_failing_their_checksum_are_refused_before_any_generator_is_built(
    chain, offline, tmp_path, monkeypatch
):
    files = folder_files(chain["a"])
    weights = bytearray(files["flow.safetensors"])
    weights[-1] ^= 0x01  # one bit of the last number
    fill_cache(offline, "alice/tampered", {**files, "flow.safetensors": bytes(weights)})
    built = []
    from promptgen.core.registry import Registry

    original = Registry.build_generator
    monkeypatch.setattr(Registry, "build_generator", lambda self, spec: built.append(spec) or original(self, spec))
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/tampered", "-o", tmp_path / "x.png"),
        "hf://alice/tampered",
        "does not match the sha256",
    )
    assert built == ["prompt:hf://alice/tampered"]  # the prompt generator itself, never the manifest's mnist
    # A manifest without a checksum cannot be checked: refused from the Hub.
    manifest = json.loads(files["manifest.json"])
    manifest["weights_sha256"] = None
    fill_cache(offline, "alice/unchecked", {**files, "manifest.json": json.dumps(manifest).encode()})
    one_line_error(run("sample", "--gen", "prompt:hf://alice/unchecked", "-o", tmp_path / "x.png"), "records no sha256")


def test_a_generator_not_installed_is_one_line(chain, offline, tmp_path):
    files = folder_files(chain["a"])
    manifest = json.loads(files["manifest.json"])
    manifest["generator"].update(spec="stylegan9-moon", name="stylegan9-moon", plugin="promptgen-plugin-moon 1.0")
    fill_cache(offline, "alice/moon", {**files, "manifest.json": json.dumps(manifest).encode()})
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/moon", "-o", tmp_path / "x.png"),
        "hf://alice/moon",
        "stylegan9-moon",
        "needs the plugin",
    )


def test_a_malformed_repo_id_is_one_line(offline, tmp_path):
    for bad in ("hf://alice/../etc", "hf://al--ice/x", "hf://", "hf://a/b/c", "hf://alice/x y", "hf://alice/-x"):
        with pytest.raises(HubError, match="not a Hugging Face repo id|names no repo"):
            parse_hub_ref(bad)
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/a..b", "-o", tmp_path / "x.png"), "not a Hugging Face repo id"
    )
    one_line_error(run("push", tmp_path, "not a repo!"), "not a Hugging Face repo id")
    with pytest.raises(HubError, match="not a revision"):
        parse_hub_ref("hf://alice/x@a..b")


def test_a_chained_prompt_from_the_hub_without_its_parents_is_one_line(chain, offline, tmp_path):
    # Uploaded by hand (not by promptgen push): b names a parent folder that is not on this machine.
    files = folder_files(chain["b"])
    manifest = json.loads(files["manifest.json"])
    manifest["generator"]["spec"] = manifest["generator"]["name"] = "prompt:/nowhere/a"
    manifest["lineage"][0].update(path="/nowhere/a", relative="../a")
    fill_cache(offline, "alice/orphan", {**files, "manifest.json": json.dumps(manifest).encode()})
    one_line_error(
        run("sample", "--gen", "prompt:hf://alice/orphan", "-o", tmp_path / "x.png"),
        "hf://alice/orphan",
        "does not hold that parent",
        "promptgen push",
    )


def test_huggingface_hub_missing_is_one_line(chain, offline, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as when it is not installed
    one_line_error(run("sample", "--gen", "prompt:hf://alice/threes", "-o", tmp_path / "x.png"), INSTALL)
    one_line_error(run("push", chain["a"], "alice/threes"), INSTALL)
    assert load_prompt(chain["a"]) is not None  # a local prompt needs no extra


def test_the_core_does_not_import_huggingface_hub(chain):
    code = (
        "import sys; import promptgen, promptgen.api, promptgen.cli, promptgen.artifacts.prompt, promptgen.artifacts.hub; "
        "from promptgen.artifacts.manifest import check_prompt; "
        f"check_prompt({str(chain['a'])!r}); promptgen.cli.app(['push', '--help'], standalone_mode=False); "
        "assert 'huggingface_hub' not in sys.modules, 'huggingface_hub imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- pushing ------------------------------------------------------------------------------------------------------


def test_push_uploads_the_prompt_and_a_model_card(chain, hub):
    result = run("push", chain["a"], "alice/threes", "--private", "--token", "hf_test_token")
    assert result.exit_code == 0, result.output
    assert "alice/threes" in result.output and "promptgen sample --gen prompt:hf://alice/threes" in result.output
    [created] = hub.created
    assert (created["name"], created["organization"]) == ("threes", "alice")
    assert created.get("visibility") == "private" or created.get("private") is True  # huggingface_hub 1.x or 0.x
    # Every call that acts on the repo carries the token (huggingface_hub 2.x also GETs a registry of its own).
    posts = [(path, headers) for method, path, headers in hub.requests if method == "POST"]
    assert [path for path, _ in posts][:1] == ["/api/repos/create"] and "/api/models/alice/threes/commit/main" in [
        path for path, _ in posts
    ]
    assert all(
        headers.get("Authorization", headers.get("authorization")) == "Bearer hf_test_token" for _, headers in posts
    )
    [commit] = hub.commits
    assert commit["repo"] == "alice/threes" and commit["revision"] == "main"
    sent = commit["files"]
    assert sorted(sent) == [
        "README.md",
        "flow.safetensors",
        "manifest.json",
        "samples.png",
    ]  # no checkpoint.pt, run.json
    for name in ("manifest.json", "flow.safetensors", "samples.png"):
        assert sent[name] == (chain["a"] / name).read_bytes(), name
    card = sent["README.md"].decode()
    manifest = read_manifest(chain["a"])
    assert card == model_card("alice/threes", prompt_chain(chain["a"]), preview=True)
    assert card.startswith("---\nlibrary_name: promptgen\n")
    for expected in (
        'pip install "./[hub]"',  # not on PyPI yet: from a clone
        "promptgen sample --gen prompt:hf://alice/threes",
        'promptgen.load_prompt("hf://alice/threes")',
        "![samples from this prompt](samples.png)",
        "`mnist`",
        "`classifier:digit=3`",
        manifest.generator.licence,
        f"Judged on {manifest.check.n:,} fresh samples",
        f"{manifest.check.targets[0].value:.1%}",
        f"{manifest.check.targets[0].base:.1%}",
        f"{manifest.training.config.steps} steps, batch {manifest.training.config.batch_size}",
        manifest.weights_sha256,
    ):
        assert expected in card, expected


def test_a_pushed_chain_loads_from_the_hub_without_its_local_folders(chain, hub, tmp_path, monkeypatch):
    result = run("push", chain["c"], "alice/chain", "-m", "three levels")
    assert result.exit_code == 0, result.output
    [commit] = hub.commits
    assert commit["summary"] == "three levels"
    sent = commit["files"]
    assert sorted(sent) == [
        "README.md",
        "ancestors/1/flow.safetensors",
        "ancestors/1/manifest.json",
        "ancestors/2/flow.safetensors",
        "ancestors/2/manifest.json",
        "flow.safetensors",
        "manifest.json",
    ]
    assert sent["ancestors/2/flow.safetensors"] == (chain["a"] / "flow.safetensors").read_bytes()
    assert json.loads(sent["manifest.json"])["lineage"][1]["relative"] == "ancestors/2"
    assert json.loads(sent["ancestors/1/manifest.json"])["lineage"][0]["relative"] == "../2"
    assert "## Parent prompts" in sent["README.md"].decode()
    # No path of the pusher's machine leaves it: each manifest names its parents by their place in the repo.
    top = json.loads(sent["manifest.json"])
    assert top["generator"]["spec"] == "prompt:ancestors/1" and [r["path"] for r in top["lineage"]] == ["ancestors/1", "ancestors/2"]
    assert top["lineage"][0]["generator"] == "prompt:ancestors/2"
    assert json.loads(sent["ancestors/1/manifest.json"])["generator"]["spec"] == "prompt:../2"
    for name, data in sent.items():
        if name.endswith((".json", ".md")):
            text = data.decode()
            assert not any(str(folder) in text or str(folder.resolve()) in text for folder in chain.values()), name

    expected = sample_images(load_prompt(chain["c"]), 6, seed=5)
    fill_cache(tmp_path / "hf-cache", "alice/chain", sent)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "promptgen-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hidden = {name: folder.with_name(folder.name + ".away") for name, folder in chain.items()}
    for name, folder in chain.items():
        folder.rename(hidden[name])  # the folders the manifests name are gone: only the repo's copies remain
    try:
        prompt = load_prompt("hf://alice/chain")
        assert torch.equal(sample_images(prompt, 6, seed=5), expected)
        assert len(prompt.chain()) == 3 and prompt.base.info.name == "mnist"
    finally:
        for name, folder in chain.items():
            hidden[name].rename(folder)


def test_push_to_a_branch_creates_it(chain, hub):
    result = run("push", chain["a"], "alice/threes", "--branch", "v1")
    assert result.exit_code == 0, result.output
    assert hub.branches == ["v1"] and [c["revision"] for c in hub.commits] == ["v1"]
    assert "hf://alice/threes@v1" in hub.commits[0]["files"]["README.md"].decode()
    assert not hub.created[0].get("private") and hub.created[0].get("visibility") != "private"


def test_push_refuses_bad_input_before_sending_anything(chain, hub, tmp_path):
    one_line_error(run("push", tmp_path / "missing", "alice/x"), "does not exist")
    one_line_error(run("push", chain["a"], "alice/x--y"), "not a Hugging Face repo id")
    one_line_error(run("push", chain["a"], "alice/x", "--branch", "../main"), "not a revision")
    damaged = tmp_path / "damaged"
    shutil.copytree(chain["a"], damaged)
    data = bytearray((damaged / "flow.safetensors").read_bytes())
    data[-1] ^= 0x01
    (damaged / "flow.safetensors").write_bytes(bytes(data))
    one_line_error(run("push", damaged, "alice/x"), "does not match the sha256")
    malformed = tmp_path / "malformed"
    shutil.copytree(chain["a"], malformed)
    (malformed / "manifest.json").write_text("{}")
    one_line_error(run("push", malformed, "alice/x"), "not a promptgen manifest")
    orphan = tmp_path / "orphan"
    shutil.copytree(chain["b"], orphan)
    manifest = json.loads((orphan / "manifest.json").read_text())
    manifest["generator"]["spec"] = "prompt:/nowhere/a"
    manifest["lineage"][0].update(path="/nowhere/a", relative=None)
    (orphan / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(run("push", orphan, "alice/x"), "which is missing")
    assert hub.requests == []


def test_push_offline_and_a_refusing_hub_are_one_line(chain, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(run("push", chain["a"], "alice/threes"), "HF_HUB_OFFLINE")
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    one_line_error(run("push", chain["a"], "alice/forbidden"), "HTTP 403", "hf auth login", "--token")
    assert hub.commits == []


def test_a_hub_prompt_as_a_parent_is_refused_in_one_line_with_the_local_copy_to_use(offline, tmp_path):
    one_line_error(
        run("compose", "--gen", "prompt:hf://alice/threes", "--energy", "classifier:digit=3", "--out", tmp_path / "d"),
        "cannot be the parent of a new prompt yet",
        "promptgen.load_prompt('hf://alice/threes').path",
    )
    assert not (tmp_path / "d").exists()
