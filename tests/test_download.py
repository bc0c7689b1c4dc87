"""promptgen.core.download.fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest
from rich.console import Console

from promptgen.core.download import DownloadError, RemoteFile, cache_root, fetch
from promptgen.core.errors import PromptgenError

# More than one read chunk, so the loop and the progress bar are exercised.
BODY = os.urandom(2_500_000)
SHA = hashlib.sha256(BODY).hexdigest()


class Route:
    def __init__(self, body: bytes, *, length: int | None = None, content_type: str = "application/octet-stream"):
        self.body = body
        self.length = length  # the Content-Length sent; None: no header (the body ends when the connection closes)
        self.content_type = content_type


class LocalServer:
    """A threaded http.server that serves ``routes`` and records every request path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                if route.length is not None:
                    self.send_header("Content-Length", str(route.length))
                self.end_headers()
                # HTTP/1.0: the connection closes after this, even if fewer bytes than promised were sent.
                self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def serve(self, name: str, body: bytes, **kwargs: object) -> str:
        self.routes[f"/{name}"] = Route(body, **kwargs)
        return self.url(name)


@pytest.fixture
def server():
    s = LocalServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "promptgen-home"
    monkeypatch.setenv("PROMPTGEN_HOME", str(root))
    return root


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip() == text and text
    assert isinstance(exc.value, PromptgenError)
    return text


def test_downloads_once_then_serves_the_cache_without_the_network(server, home):
    remote = RemoteFile(server.serve("w.pt", BODY, length=len(BODY)), "weights.pt", sha256=SHA)
    path = fetch(remote, subdir="toy", progress=False)
    assert path == home / "toy" / "weights.pt"
    assert path.read_bytes() == BODY
    assert files_under(home) == [path]  # no temporary file left beside it
    assert server.hits == ["/w.pt"]

    again = fetch(remote, subdir="toy", progress=False)
    assert again == path and again.read_bytes() == BODY
    assert server.hits == ["/w.pt"]  # the cache hit did not touch the server


def test_without_checksum_and_without_content_length(server, home):
    remote = RemoteFile(server.serve("w.pt", BODY, length=None), "weights.pt")
    assert fetch(remote, subdir="toy", progress=False).read_bytes() == BODY


def test_progress_bar_counts_bytes(server, home):
    buffer = io.StringIO()
    remote = RemoteFile(server.serve("w.pt", BODY, length=len(BODY)), "weights.pt")
    fetch(remote, subdir="toy", console=Console(file=buffer, width=120), progress=True)
    shown = buffer.getvalue()
    assert "weights.pt" in shown and "2.5/2.5 MB" in shown


def test_checksum_mismatch_is_an_error_and_caches_nothing(server, home):
    wrong = "0" * 64
    url = server.serve("w.pt", BODY, length=len(BODY))
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt", sha256=wrong), subdir="toy", progress=False)
    text = one_line(info)
    assert url in text and wrong in text and SHA in text
    assert files_under(home) == []
    assert not (home / "toy").exists()


def test_a_published_size_is_checked_when_there_is_no_checksum(server, home):
    url = server.serve("w.pt", BODY, length=None)
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt", size=len(BODY) + 1), subdir="toy", progress=False)
    text = one_line(info)
    assert f"{len(BODY):,} bytes arrived" in text and f"published as {len(BODY) + 1:,} bytes" in text
    assert files_under(home) == []
    assert fetch(RemoteFile(url, "weights.pt", size=len(BODY)), subdir="toy", progress=False).read_bytes() == BODY
    with pytest.raises(ValueError, match="size must be a whole number"):
        RemoteFile(url, "w.pt", size=-1)


def test_interrupted_transfer_is_an_error_and_caches_nothing(server, home):
    url = server.serve("w.pt", BODY[:100_000], length=len(BODY))  # promises more than it sends, then closes
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False)
    text = one_line(info)
    assert url in text and "100,000" in text and f"{len(BODY):,}" in text
    assert str(home / "toy" / "weights.pt") in text
    assert files_under(home) == []


def test_offline_names_the_url_and_where_to_put_the_file(home):
    with socket.socket() as s:  # a port nothing listens on: connection refused, as when a host is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/weights.pt"
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False)
    text = one_line(info)
    assert url in text and "refused" in text
    assert str(home / "toy" / "weights.pt") in text and "path=" in text
    assert files_under(home) == [] and not home.exists()


def test_unknown_host(home):
    url = "http://promptgen-no-such-host.invalid/weights.pt"  # .invalid never resolves (RFC 2606)
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False, timeout=5)
    text = one_line(info)
    assert url in text and "cannot look up promptgen-no-such-host.invalid" in text


def test_timeout(home):
    with socket.socket() as listener:  # accepts connections into its backlog but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/weights.pt"
        with pytest.raises(DownloadError) as info:
            fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False, timeout=0.3)
    text = one_line(info)
    assert url in text and "timed out" in text and str(home / "toy" / "weights.pt") in text
    assert files_under(home) == []


def test_http_404(server, home):
    url = server.url("missing.pt")
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False)
    text = one_line(info)
    assert url in text and "HTTP 404" in text and str(home / "toy" / "weights.pt") in text
    assert files_under(home) == []


def test_a_web_page_instead_of_the_file_is_refused(server, home):
    url = server.serve("w.pt", b"<html>Sign in</html>", length=20, content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile(url, "weights.pt"), subdir="toy", progress=False)
    assert url in one_line(info) and "web page" in str(info.value)
    assert files_under(home) == []


def test_path_given_is_used_without_the_network(server, home, tmp_path):
    local = tmp_path / "mine.pt"
    local.write_bytes(b"weights")
    remote = RemoteFile(server.url("w.pt"), "weights.pt")
    assert fetch(remote, subdir="toy", path=local) == local
    assert fetch(remote, subdir="toy", path=str(local)) == local
    assert server.hits == [] and files_under(home) == []


def test_path_given_but_missing(server, home, tmp_path):
    remote = RemoteFile(server.url("w.pt"), "weights.pt")
    with pytest.raises(DownloadError) as info:
        fetch(remote, subdir="toy", path=tmp_path / "nope.pt")
    text = one_line(info)
    assert str(tmp_path / "nope.pt") in text and "does not exist" in text and "path=" in text
    assert remote.url in text
    assert server.hits == []
    with pytest.raises(DownloadError, match="is a folder"):
        fetch(remote, subdir="toy", path=tmp_path)


def test_promptgen_home_is_honoured(monkeypatch, tmp_path, server):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PROMPTGEN_HOME", "~/caches/pg")
    assert cache_root() == tmp_path / "caches" / "pg"
    remote = RemoteFile(server.serve("w.pt", BODY, length=len(BODY)), "weights.pt")
    assert fetch(remote, subdir="toy", progress=False) == tmp_path / "caches" / "pg" / "toy" / "weights.pt"

    monkeypatch.delenv("PROMPTGEN_HOME")
    assert cache_root() == platformdirs.user_cache_path("promptgen")


def test_a_file_put_in_the_cache_by_hand_is_used(server, home):
    (home / "toy").mkdir(parents=True)
    (home / "toy" / "weights.pt").write_bytes(b"by hand")
    remote = RemoteFile(server.url("w.pt"), "weights.pt", sha256=SHA)
    assert fetch(remote, subdir="toy").read_bytes() == b"by hand"
    assert server.hits == []


def test_remote_file_checks_its_fields():
    with pytest.raises(ValueError, match="bare file name"):
        RemoteFile("http://x/a", "sub/a.pt")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        RemoteFile("http://x/a", "a.pt", sha256=SHA.upper())


def test_promptgen_offline_refuses_to_download_but_serves_the_cache(server, home, monkeypatch):
    remote = RemoteFile(server.serve("w.pt", BODY, length=len(BODY)), "weights.pt", sha256=SHA)
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        fetch(remote, subdir="toy", progress=False)
    assert "PROMPTGEN_OFFLINE is set" in one_line(info) and server.hits == []
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "0")  # 0 means online
    path = fetch(remote, subdir="toy", progress=False)
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "yes")
    assert fetch(remote, subdir="toy", progress=False) == path and server.hits == ["/w.pt"]


# plugin.local_file and plugin.zoo_entries: the zoo helpers every generator plugin uses.


def test_local_file_path_then_cache_then_download(server, home, tmp_path):
    from promptgen.plugin import Published, local_file, parse_spec

    spec = parse_spec("toygan-ffhq")
    published = Published("weights.pt", url=server.serve("w.pt", BODY, length=len(BODY)), sha256=SHA)
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"x")
    assert local_file(published, path=str(mine), subdir="toy", spec=spec, what="a toy .pt", progress=False) == mine
    assert server.hits == []  # path= wins, without the network
    got = local_file(published, path=None, subdir="toy", spec=spec, what="a toy .pt", progress=False)
    assert got == home / "toy" / "weights.pt" and got.read_bytes() == BODY
    assert server.hits == ["/w.pt"]


def test_local_file_errors_are_one_line_and_say_what_to_do(home, tmp_path):
    from promptgen.plugin import Published, SpecError, local_file, parse_spec

    spec = parse_spec("toygan-ffhq")
    with pytest.raises(SpecError) as e:
        local_file(None, path=None, subdir="toy", spec=spec, what="a toy .pt", progress=False)
    assert "give a toy .pt with path=" in one_line(e)
    with pytest.raises(SpecError) as e:
        local_file(None, path=str(tmp_path), subdir="toy", spec=spec, what="a toy .pt", progress=False)
    assert "is a folder, not a file; give a toy .pt" in one_line(e)
    by_hand = Published("weights.pt", page="https://example.org/drive")
    with pytest.raises(DownloadError) as e:
        local_file(by_hand, path=None, subdir="toy", spec=spec, what="a toy .pt", progress=False)
    text = one_line(e)
    assert "by hand from https://example.org/drive" in text and str(home / "toy" / "weights.pt") in text
    (home / "toy").mkdir(parents=True)
    (home / "toy" / "weights.pt").write_bytes(b"y")
    assert (
        local_file(by_hand, path=None, subdir="toy", spec=spec, what="a toy .pt", progress=False).read_bytes() == b"y"
    )


def test_zoo_entries_build_each_named_model():
    from dataclasses import dataclass

    from promptgen.plugin import NoOptions, Registry, parse_spec, zoo_entries

    @dataclass(frozen=True)
    class Model:
        name: str
        size: int

    built = []
    models = {m.name: m for m in [Model("toy-a", 1), Model("toy-b", 2)]}
    entries = zoo_entries(
        models,
        lambda spec, options, registry, model: built.append((spec.name, model.size)),
        options=NoOptions,
        summary=lambda m: f"toy of size {m.size}",
        example=lambda m: f"{m.name}:x=1",
    )
    assert [(e.name, e.summary, e.example) for e in entries] == [
        ("toy-a", "toy of size 1", "toy-a:x=1"),
        ("toy-b", "toy of size 2", "toy-b:x=1"),
    ]
    entries[1].build(parse_spec("toy-b"), NoOptions(), Registry())
    assert built == [("toy-b", 2)]
