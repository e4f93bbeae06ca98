"""`hotline models list|fetch` against a local HTTP server, `hotline worker` without a model."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hotline.cli import main
from voice_models import catalogue
from voice_models.catalogue import ModelInfo


def model_zip(name: str, *, top: bool = True) -> bytes:
    buf = io.BytesIO()
    prefix = f"{name}/" if top else ""
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{prefix}am/final.mdl", b"acoustic model" * 1000)
        zf.writestr(f"{prefix}conf/model.conf", "--sample-frequency=16000\n")
        zf.writestr(f"{prefix}README", "test model\n")
    return buf.getvalue()


@pytest.fixture
def server() -> Iterator[dict[str, bytes]]:
    """A local HTTP server; put path → bytes into the dict it yields (url under 'base')."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    files["base"] = f"http://127.0.0.1:{httpd.server_address[1]}".encode()
    yield files
    httpd.shutdown()
    httpd.server_close()


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def test_model(server, monkeypatch) -> tuple[str, bytes]:
    data = model_zip("vosk-model-test-0.1")
    server["/vosk-model-test-0.1.zip"] = data
    info = ModelInfo(
        name="vosk-model-test-0.1",
        language="ru",
        sample_rate=16000,
        size="14K",
        url=server["base"].decode() + "/vosk-model-test-0.1.zip",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(catalogue.CATALOGUE, info.name, info)
    return info.name, data


def test_fetch_verifies_and_unpacks(capsys, tmp_path, test_model):
    name, _ = test_model
    code, out, err = run(capsys, "models", "fetch", name, "--dir", str(tmp_path))
    assert code == 0, err
    assert f"installed {name}" in out
    assert (tmp_path / name / "am" / "final.mdl").read_bytes() == b"acoustic model" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary files left
    code, out, _ = run(capsys, "models", "list", "--dir", str(tmp_path))
    assert code == 0 and f"{name}\tru\t16000 Hz\t14K\tinstalled" in out
    assert "vosk-model-small-ru-0.22 (default)" in out
    # Fetching again refuses to overwrite unless asked.
    code, _, err = run(capsys, "models", "fetch", name, "--dir", str(tmp_path))
    assert code == 1 and err.startswith("error: ") and "already exists" in err
    code, _, err = run(capsys, "models", "fetch", name, "--dir", str(tmp_path), "--force")
    assert code == 0, err


def test_a_checksum_mismatch_is_refused_and_leaves_nothing(capsys, tmp_path, server, test_model):
    name, _ = test_model
    server["/tampered.zip"] = model_zip(name) + b"\x00"
    url = server["base"].decode() + "/tampered.zip"
    code, _, err = run(capsys, "models", "fetch", name, "--dir", str(tmp_path), "--url", url)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: sha256 mismatch")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "unknown model"),
        ("no-sha", "no published sha256"),
        ("404", "download of"),
        ("not-zip", "not a valid zip"),
        ("not-model", "does not hold a Vosk model"),
    ],
)
def test_fetch_errors_are_one_line(capsys, tmp_path, server, monkeypatch, setup, message):
    name = "vosk-model-small-ko-0.22"
    args = ["models", "fetch", name, "--dir", str(tmp_path)]
    base = server["base"].decode()
    if setup == "unknown":
        args[2] = "vosk-model-nope"
    elif setup == "404":
        args += ["--url", base + "/missing.zip", "--sha256", "0" * 64]
    elif setup in ("not-zip", "not-model"):
        body = b"<html>not a zip</html>" if setup == "not-zip" else _zip_without_model()
        server["/x.zip"] = body
        args += ["--url", base + "/x.zip", "--sha256", hashlib.sha256(body).hexdigest()]
    code, out, err = run(capsys, *args)
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def _zip_without_model() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("something/readme.txt", "hello")
    return buf.getvalue()


def test_worker_without_a_model_says_how_to_fetch_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(tmp_path), HOTLINE_VOSK_MODEL=str(tmp_path / "vosk-model-small-ru-0.22"))
    hotline = str(Path(sys.executable).parent / "hotline")
    proc = subprocess.run(
        [hotline, "worker"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 78  # EX_CONFIG: the units do not restart it every 5 s; fetching cures it
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Vosk model not found")
    assert "hotline models fetch vosk-model-small-ru-0.22" in last
