"""Shared fixtures: real media and real models from ../shared, never written to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALPROF_SHARED", REPO.parent / "shared"))
TESTMEDIA = SHARED / "testmedia"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(scope="session", autouse=True)
def session_env(tmp_path_factory):
    """Module- and session-scoped fixtures run before the per-test one below: give them the
    same models and a throw-away data dir too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALPROF_MODELS", os.environ.get("GALPROF_TEST_MODELS", str(SHARED_MODELS)))
        mp.setenv("GALPROF_HOME", str(tmp_path_factory.mktemp("session-home")))
        mp.delenv("GALPROF_DB", raising=False)
        yield


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own data dir and database; models come from ../shared/models."""
    monkeypatch.setenv("GALPROF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GALPROF_DB", raising=False)
    monkeypatch.setenv("GALPROF_MODELS", os.environ.get("GALPROF_TEST_MODELS", str(SHARED_MODELS)))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def testmedia() -> Path:
    if not TESTMEDIA.is_dir():
        pytest.fail(f"test media not found at {TESTMEDIA} (set GALPROF_SHARED)")
    return TESTMEDIA


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return Path(os.environ.get("GALPROF_TEST_MODELS", str(SHARED_MODELS)))


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (skips the test without openssl)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key
