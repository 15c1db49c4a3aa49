"""`pip install galprof` on a Raspberry Pi needs no compiler: every runtime requirement has
a wheel for manylinux_2_28_aarch64 / CPython 3.11 on PyPI (asked for real, bench/wheels.py).

hdbscan is left out: it has no aarch64 wheel (bench/wheels.py shows it), and issue 13
replaced it by scikit-learn's sklearn.cluster.HDBSCAN (issue 15 by galprof's own,
galprof/people/hdbscan.py), so it left install_requires.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "wheels.py"
LEAVING = {"hdbscan"}     # leaves install_requires with issue 13 (scikit-learn's HDBSCAN)


def _wheels_module():
    spec = importlib.util.spec_from_file_location("bench_wheels", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheels = _wheels_module()


def _without_leaving(requirements):
    from packaging.requirements import Requirement

    return [r for r in requirements if Requirement(r).name not in LEAVING]


@pytest.mark.network
def test_every_runtime_requirement_has_an_aarch64_wheel():
    requirements = _without_leaving(wheels.requirements(extras=("onnx",)))
    assert any(r.startswith("ai-edge-litert") for r in requirements)
    found = wheels.check(requirements, arch="aarch64", glibc_minor=28, python_version="3.11")
    assert set(found) == set(requirements)           # every line applies on aarch64
    missing = {r: w.strip() for r, w in found.items() if not w or w.startswith("\t")}
    assert missing == {}
    for requirement, wheel in found.items():
        assert wheel.endswith(".whl")
        assert "aarch64" in wheel or "-none-any" in wheel or "abi3" in wheel, (requirement, wheel)


def test_platform_tags_cover_every_older_glibc():
    tags = wheels.platform_tags("aarch64", 28)
    assert tags[0] == "manylinux_2_28_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags and len(tags) == 13


def test_markers_are_evaluated_for_the_device():
    line = 'ai-edge-litert>=1.0; platform_machine == "x86_64" or platform_machine == "aarch64"'
    assert wheels.applies(line, "aarch64", "3.11")
    assert not wheels.applies(line, "armv7l", "3.11")
