"""The remote tier end to end: a real `galprof serve` on 127.0.0.1 (a subprocess on a free
port, with a token generated here), a real device scan of a mixed gallery, and the
offload. The server's own request log is the witness of what left the device."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from galprof import privacy
from galprof.remote.client import offload
from galprof.pipeline import Settings, run
from galprof.store import open_store

from conftest import SHARED_MODELS, throwaway_certificate

# Video sampling of the scan and the offload (they must agree): few frames, fast test.
FRAME_STEP, MAX_FRAMES = 5, 4

PRIVATE_BY_RULES = ["faces/face_recognition/obama.jpg", "scenes/ul_zidane.jpg",
                    "videos/derived/intel_head-pose-face-detection-male_from_gif.mp4"]
MARKED_BEFORE_SCAN = "scenes/skimage_chelsea.png"
MARKED_AFTER_SCAN = "scenes/pp_dog_orange.jpg"
PUBLIC = ["scenes/tfod_image10.jpg", "scenes/coral_kite_and_cold.jpg", "scenes/skimage_coffee.png",
          "exif/phone/pp_iPhoneSE_beach_sand.jpg",     # carries GPS EXIF
          "videos/mei_swans_Issue_515.mp4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    token: str
    log: Path

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_server(folder: Path, tls: tuple[Path, Path] | None = None) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    port = _free_port()
    env = {**os.environ, "GALPROF_MODELS": str(SHARED_MODELS), "GALPROF_HOME": str(folder)}
    env.pop("GALPROF_SERVER_TOKEN", None)
    log = folder / "requests.jsonl"
    err = open(folder / "server.err", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "galprof", "serve", "--port", str(port), "--token-file",
         str(token_file), "--request-log", str(log), "--threads", "1", "--log-level", "warning"]
        + (["--cert", str(tls[0]), "--key", str(tls[1])] if tls else []),
        env=env, stdout=err, stderr=subprocess.STDOUT)
    server = Server(proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", token, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("server exited: " + (folder / "server.err").read_text()[-2000:])
        try:
            if httpx.get(server.url + "/health", timeout=1,
                         verify=_ca(tls[0]) if tls else True).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    pytest.fail("server did not become healthy in 60 s")


def _ca(cert: Path):
    import ssl
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


def _stages():
    from galprof.vision.faces import FacesStage
    from galprof.vision.objects import ObjectsStage
    from galprof.vision.scenes import ScenesStage
    return [ObjectsStage(), ScenesStage(), FacesStage()]


@dataclass
class Gallery:
    root: Path
    db: Path                  # the device scan, to be copied by each test
    paths: dict[str, str]     # testmedia relative path -> absolute gallery path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, testmedia):
    """A mixed gallery scanned on the device (all stages), one file marked before the scan."""
    base = tmp_path_factory.mktemp("gallery")
    root = base / "DCIM"
    paths = {}
    for rel in PRIVATE_BY_RULES + [MARKED_BEFORE_SCAN, MARKED_AFTER_SCAN] + PUBLIC:
        dst = root / rel.replace("/", "_")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(testmedia / rel, dst)
        paths[rel] = str(dst)
    db = base / "template.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALPROF_MODELS", str(SHARED_MODELS))
        with open_store(db) as store:
            privacy.mark(store, [Path(paths[MARKED_BEFORE_SCAN])])   # not scanned yet
            summary = run(store, [root], Settings(stages=_stages(), frame_step=FRAME_STEP, max_frames=MAX_FRAMES))
            assert summary.failed == 0, summary.failures
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Gallery(root, db, paths)


def copy_store(gallery: Gallery, tmp_path: Path):
    dst = tmp_path / "galprof.db"
    src = sqlite3.connect(gallery.db)
    out = sqlite3.connect(dst)
    src.backup(out)
    src.close()
    out.close()
    return open_store(dst)


def _tiers(store, path: str) -> dict[str, str]:
    row = store.media.by_path(path)
    return {stage: r.tier for stage, r in store.results.all(row["content_hash"]).items()}


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])
    return w * h / (area(a) + area(b) - w * h)


def _run(store, server_url: str, token: str, **kw):
    warnings = []
    kw.setdefault("backoff", 0.05)
    summary = offload(store, server_url, token, frame_step=FRAME_STEP, max_frames=MAX_FRAMES,
                      on_warning=warnings.append, **kw)
    return summary, warnings


def test_private_photos_never_reach_the_server(gallery, server, tmp_path):
    store = copy_store(gallery, tmp_path)
    privacy.mark(store, [Path(gallery.paths[MARKED_AFTER_SCAN])])
    before = len(server.entries())
    summary, warnings = _run(store, server.url, server.token)
    received = server.entries()[before:]

    hashes = {rel: store.media.by_path(p)["content_hash"] for rel, p in gallery.paths.items()}
    private_rels = PRIVATE_BY_RULES + [MARKED_BEFORE_SCAN, MARKED_AFTER_SCAN]
    arrived = {e["item"] for e in received}
    assert not arrived & {hashes[r] for r in private_rels}, "a private item reached the server"
    assert arrived == {hashes[r] for r in PUBLIC}
    assert all(e["status"] == "accepted" and not e["exif"] for e in received)
    # The device's audit log names exactly the bytes the server received.
    audit = store.privacy.uploads()
    assert {s for u in audit for s in u["sha256"].split(",")} == {e["sha256"] for e in received}
    assert {u["path"] for u in audit} == {gallery.paths[r] for r in PUBLIC}
    assert all(u["status"] == "ok" and u["server"] == server.url for u in audit)
    # The video went as its sampled frames, one request.
    video = next(u for u in audit if u["path"].endswith(".mp4"))
    assert video["images"] == MAX_FRAMES

    assert warnings == [] and summary.stopped is None
    assert summary.upgraded == len(PUBLIC) and summary.private == len(private_rels)
    for rel in PUBLIC:
        assert _tiers(store, gallery.paths[rel]) == {"objects": "remote", "scenes": "remote",
                                                      "faces": "device"}
    for rel in private_rels:
        assert set(_tiers(store, gallery.paths[rel]).values()) == {"device"}
    listed = {i["path"]: i for i in privacy.list_private(store)}
    assert set(listed) == {gallery.paths[r] for r in private_rels}
    assert listed[gallery.paths[MARKED_BEFORE_SCAN]]["marked"]
    assert any("central" in r for r in listed[gallery.paths[PRIVATE_BY_RULES[0]]]["reasons"])

    # The remote tier finds the small kites and people that one 416 px look misses.
    kite = store.media.by_path(gallery.paths["scenes/coral_kite_and_cold.jpg"])["content_hash"]
    with open_store(gallery.db) as device_store:
        device = [o.to_json() for o in device_store.results.payload(kite, "objects").summary()]
    remote = [o.to_json() for o in store.results.payload(kite, "objects").summary()]
    count = lambda objects, label: max([o["count"] for o in objects if o["label"] == label] or [0])
    assert count(remote, "kite") > count(device, "kite")
    # Boxes come back in original pixels, like the device stage's: the best kite is one box.
    best = lambda objects: next(o["box"] for o in objects if o["label"] == "kite")
    assert _iou(best(remote), best(device)) > 0.7

    # A re-scan keeps the remote results, and a second offload has nothing to send.
    rescan = run(store, [gallery.root], Settings(stages=_stages(), frame_step=FRAME_STEP, max_frames=MAX_FRAMES))
    assert rescan.analysed == 0 and rescan.unchanged == len(gallery.paths)
    assert _tiers(store, gallery.paths[PUBLIC[0]])["objects"] == "remote"
    again, _ = _run(store, server.url, server.token)
    assert again.candidates == 0 and len(server.entries()) == before + len(received)

    info = privacy.describe(store, store.media.by_path(gallery.paths[PUBLIC[0]]))
    assert info["private"] is False and info["tiers"]["objects"] == "remote"
    assert len(info["uploads"]) == 1
    store.close()


def test_wrong_token_or_no_server_keeps_device_results(gallery, server, tmp_path):
    store = copy_store(gallery, tmp_path)
    before = len(server.entries())
    summary, warnings = _run(store, server.url, secrets.token_urlsafe(32))
    assert summary.stopped == "the server refused the token (401)"
    assert len(warnings) == 1 and "401" in warnings[0]
    # (the file the other tests mark after the scan is public here)
    assert summary.upgraded == 0 and summary.kept_on_device == summary.candidates == len(PUBLIC) + 1
    assert len(server.entries()) == before          # nothing was analysed or logged
    assert {u["status"] for u in store.privacy.uploads()} == {"401"}
    for rel in PUBLIC:
        assert set(_tiers(store, gallery.paths[rel]).values()) == {"device"}

    down, warnings = _run(store, f"http://127.0.0.1:{_free_port()}", "t" * 32, retries=1,
                          timeout=2)
    assert down.stopped.startswith("server unreachable") and len(warnings) == 1
    assert down.upgraded == 0
    store.close()


def test_server_killed_mid_offload_then_upgraded_later(gallery, server, tmp_path):
    store = copy_store(gallery, tmp_path)
    privacy.mark(store, [Path(gallery.paths[MARKED_AFTER_SCAN])])
    doomed = start_server(tmp_path / "doomed")
    seen = []

    def kill_after_first(path, status):
        seen.append(status)
        if len(seen) == 1:
            doomed.stop()

    try:
        summary, warnings = _run(store, doomed.url, doomed.token, concurrency=1, retries=1,
                                 timeout=5, on_item=kill_after_first)
    finally:
        doomed.stop()
    assert summary.upgraded == 1 and summary.stopped.startswith("server unreachable")
    assert len(warnings) == 1
    assert summary.kept_on_device == len(PUBLIC) - 1
    tiers = [_tiers(store, gallery.paths[rel])["objects"] for rel in PUBLIC]
    assert sorted(tiers) == ["device"] * (len(PUBLIC) - 1) + ["remote"]

    # When a server is back, the next offload upgrades the rest.
    later, warnings = _run(store, server.url, server.token)
    assert later.upgraded == len(PUBLIC) - 1 and warnings == []
    assert {_tiers(store, gallery.paths[rel])["objects"] for rel in PUBLIC} == {"remote"}
    store.close()


def test_client_refuses_plain_http_beyond_this_machine():
    from galprof.errors import SetupError
    from galprof.remote.client import check_url

    with pytest.raises(SetupError, match="unencrypted"):
        check_url("http://192.168.1.20:8765")
    assert check_url("https://galprof.example.org/") == "https://galprof.example.org"
    assert check_url("http://[::1]:8765") == "http://[::1]:8765"
    assert check_url("http://10.0.0.2:8765", allow_http=True) == "http://10.0.0.2:8765"
    with pytest.raises(SetupError, match="expected an http"):
        check_url("ftp://host")


def test_tls_with_cert_and_key(gallery, tmp_path):
    """`serve --cert/--key` speaks https; the client verifies it against the given CA."""
    cert, key = throwaway_certificate(tmp_path)
    secure = start_server(tmp_path / "tls", tls=(cert, key))
    try:
        store = copy_store(gallery, tmp_path)
        summary, warnings = _run(store, secure.url, secure.token, roots=[
            Path(gallery.paths["scenes/skimage_coffee.png"])], verify=cert)
        assert summary.upgraded == 1 and warnings == []
        assert store.privacy.uploads()[0]["server"] == secure.url
        # Without the CA the certificate is refused: the scan's results stay on the device.
        _, warnings = _run(store, secure.url, secure.token, roots=[
            Path(gallery.paths["scenes/tfod_image10.jpg"])], retries=0)
        assert len(warnings) == 1 and "certificate is not trusted" in warnings[0]
        store.close()
        # The same through `galprof scan --remote https://... --ca-file`.
        root = tmp_path / "cli"
        root.mkdir()
        shutil.copyfile(gallery.paths["scenes/skimage_coffee.png"], root / "coffee.png")
        token_file = tmp_path / "token"
        token_file.write_text(secure.token)
        token_file.chmod(0o600)
        from galprof.cli import cli
        r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(tmp_path / "cli.db"), "--json",
                                     "--stages", "objects,scenes,faces", "--remote", secure.url,
                                     "--token-file", str(token_file), "--ca-file", str(cert)])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["remote"]["upgraded"] == 1
        # A token file others can read is used, with one warning line, as ssh would say.
        token_file.chmod(0o644)
        r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(tmp_path / "cli.db"),
                                     "--quiet", "--remote", secure.url, "--token-file",
                                     str(token_file), "--ca-file", str(cert)])
        assert r.exit_code == 0, r.output
        warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and str(token_file) in warnings[0], r.stderr
        assert "chmod 600" in warnings[0] or "readable" in warnings[0], warnings
    finally:
        secure.stop()


def test_scan_cli_with_remote(server, testmedia, tmp_path):
    """`galprof scan --remote URL --token-file F`: device scan, people and privacy passes,
    then only the public photo goes to the server."""
    root = tmp_path / "DCIM"
    root.mkdir()
    shutil.copyfile(testmedia / "scenes/coral_kite_and_cold.jpg", root / "kites.jpg")
    shutil.copyfile(testmedia / "faces/face_recognition/obama.jpg", root / "portrait.jpg")
    token_file = tmp_path / "token"
    token_file.write_text(server.token)
    before = len(server.entries())
    from galprof.cli import cli
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(tmp_path / "g.db"), "--json",
                                 "--remote", server.url, "--token-file", str(token_file),
                                 "--frame-step", str(FRAME_STEP), "--max-frames", str(MAX_FRAMES)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["passes"]["privacy"]["private"], out["passes"]["privacy"]["public"]) == (1, 1)
    assert out["remote"]["upgraded"] == 1 and out["remote"]["images"] == 1
    assert len(server.entries()) == before + 1
    with open_store(tmp_path / "g.db") as store:
        assert _tiers(store, str(root / "kites.jpg"))["objects"] == "remote"
        assert _tiers(store, str(root / "portrait.jpg"))["objects"] == "device"
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(tmp_path / "g.db"),
                                 "--remote", "http://example.org:9", "--token-file", str(token_file)])
    assert r.exit_code == 1 and "http" in r.output
