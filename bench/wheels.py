"""Does every runtime requirement of setup.cfg have a wheel for a device's platform?

A device without a compiler (a Raspberry Pi, a phone) can `pip install galprof` only when
each requirement has a binary wheel for it. This asks PyPI, through the user's own pip
configuration, one requirement at a time:

    pip download --only-binary=:all: --platform TAG... --python-version 3.11 --no-deps REQ

with every platform tag a device of that glibc accepts (a manylinux_2_28 device also takes
manylinux_2_17 ... manylinux_2_27 wheels, and pip does not widen --platform by itself).
Requirements whose environment marker excludes the device are skipped, as pip would.

    PYTHONPATH=$PWD python3 bench/wheels.py                  # aarch64, glibc 2.28, cp311
    PYTHONPATH=$PWD python3 bench/wheels.py --arch armv7l --glibc 36 --extra onnx
"""

from __future__ import annotations

import argparse
import configparser
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180


def requirements(setup_cfg: Path = REPO / "setup.cfg", extras: tuple[str, ...] = ()) -> list[str]:
    """install_requires of setup.cfg, plus the named extras, one requirement string each."""
    config = configparser.ConfigParser()
    config.read(setup_cfg, encoding="utf-8")
    lines = config["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += config["options.extras_require"][extra].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def platform_tags(arch: str = "aarch64", glibc_minor: int = 28) -> list[str]:
    """Every manylinux tag a Linux device with glibc 2.<glibc_minor> accepts."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 16, -1)]
    if arch in ("aarch64", "x86_64", "armv7l", "ppc64le", "s390x", "i686"):
        tags.append(f"manylinux2014_{arch}")
    return tags


def applies(requirement: str, arch: str, python_version: str) -> bool:
    """Whether pip on that device would install this requirement (its marker)."""
    marker = Requirement(requirement).marker
    if marker is None:
        return True
    env = default_environment()
    env.update(platform_machine=arch, sys_platform="linux", platform_system="Linux",
               os_name="posix", python_version=python_version,
               python_full_version=python_version + ".0", implementation_name="cpython",
               platform_python_implementation="CPython")
    return marker.evaluate(env)


def find_wheel(requirement: str, tags: list[str], python_version: str, workdir: Path) -> str:
    """The wheel file pip picks for requirement, or "" when there is none (with pip's reason
    after a tab)."""
    dest = Path(tempfile.mkdtemp(dir=workdir))
    spec = str(Requirement(requirement)).split(";")[0].strip()
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--python-version", python_version, "--disable-pip-version-check",
               "--progress-bar", "off", "--dest", str(dest), spec]
    for tag in tags:
        command[5:5] = ["--platform", tag]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    if done.returncode == 0 and wheels:
        return wheels[0]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return "\t" + (errors[-1] if errors else done.stderr.strip()[-200:])


def check(reqs: list[str], arch: str = "aarch64", glibc_minor: int = 28,
          python_version: str = "3.11") -> dict[str, str]:
    """{requirement: wheel file name, or "" + tab + reason}, for those that apply there."""
    tags = platform_tags(arch, glibc_minor)
    wanted = [r for r in reqs if applies(r, arch, python_version)]
    with tempfile.TemporaryDirectory(prefix="galprof-wheels-") as workdir, \
            ThreadPoolExecutor(max_workers=4) as pool:
        found = pool.map(lambda r: find_wheel(r, tags, python_version, Path(workdir)), wanted)
        return dict(zip(wanted, found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="aarch64")
    parser.add_argument("--glibc", type=int, default=28, help="glibc minor version (2.X)")
    parser.add_argument("--python", default="3.11")
    parser.add_argument("--extra", action="append", default=[], help="add an extra's lines")
    parser.add_argument("--without", action="append", default=[],
                        help="leave out a requirement by project name")
    args = parser.parse_args()
    reqs = [r for r in requirements(extras=tuple(args.extra))
            if Requirement(r).name not in set(args.without)]
    result = check(reqs, args.arch, args.glibc, args.python)
    print(f"{args.arch}, glibc 2.{args.glibc}, CPython {args.python}:")
    for requirement, wheel in result.items():
        print(f"  {'ok  ' if wheel and not wheel.startswith(chr(9)) else 'NONE'} "
              f"{requirement.split(';')[0]:24} {wheel.strip()}")
    missing = [r for r, w in result.items() if not w or w.startswith("\t")]
    print(f"{len(result) - len(missing)} of {len(result)} have a wheel")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
