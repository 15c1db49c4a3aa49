"""The model manifest (models/manifest.toml): specs, locations and hash checks.

The manifest is data; this module only reads it. Installation lives in
`galprof.vision.install`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from galprof.errors import ModelMismatch, ModelMissing, UnknownModel
from galprof.paths import models_dir

MANIFEST_PATH = Path(__file__).with_name("manifest.toml")


@dataclass(frozen=True)
class FileSpec:
    """One file the models directory should hold (weights or a label list)."""

    file: str
    sha256: str
    size: int
    licence: str
    source: str
    url: str = ""
    # A file shipped inside an installed Python package ("top_package/dir/file"), found
    # there with importlib instead of in the models directory; `extra` names the galprof
    # extra that installs that package (pip install 'galprof[EXTRA]').
    package: str = ""
    extra: str = ""


@dataclass(frozen=True)
class ModelSpec(FileSpec):
    id: str = ""
    role: str = ""
    labels: str = ""
    label_offset: int = 0
    default: bool = False
    optional: bool = False
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        """What a cached result is keyed by: the model id and its weights' hash."""
        return f"{self.id}@{self.sha256[:12]}"


@lru_cache(maxsize=1)
def _manifest() -> dict:
    with open(MANIFEST_PATH, "rb") as f:
        return tomllib.load(f)


def models() -> dict[str, ModelSpec]:
    """Every model of the manifest by id, in manifest order."""
    out = {}
    for model_id, entry in _manifest()["models"].items():
        out[model_id] = ModelSpec(id=model_id, **entry)
    return out


def files() -> dict[str, FileSpec]:
    """Every file the manifest names (models and label lists), by file name."""
    out = {name: FileSpec(file=name, **entry) for name, entry in _manifest()["files"].items()}
    for spec in models().values():
        out[spec.file] = spec
    return out


def get(model_id: str) -> ModelSpec:
    try:
        return models()[model_id]
    except KeyError:
        known = ", ".join(models())
        raise UnknownModel(f"unknown model {model_id!r} (known: {known})") from None


def default_for(role: str) -> ModelSpec:
    for spec in models().values():
        if spec.role == role and spec.default:
            return spec
    raise UnknownModel(f"no default model for role {role!r}")


def ids_for(role: str) -> list[str]:
    return [m.id for m in models().values() if m.role == role]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


INSTALL_HINT = "galprof models install --from DIR_OR_URL"


def package_path(spec: FileSpec) -> Path | None:
    """Where a `package` file would be, or None when its package is not installed.

    find_spec does not import the package (rapidocr_onnxruntime would import OpenCV)."""
    top, _, rest = spec.package.partition("/")
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / rest


def path_of(spec: FileSpec, directory: Path | None = None) -> Path:
    """Where the file is looked for: inside its package, or in the models directory."""
    if spec.package:
        return package_path(spec) or Path(spec.package)
    return (directory or models_dir()) / spec.file


@lru_cache(maxsize=None)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def _locate_in_package(spec: FileSpec) -> Path:
    path = package_path(spec)
    top = spec.package.partition("/")[0]
    hint = f"pip install 'galprof[{spec.extra}]'" if spec.extra else f"pip install {top}"
    if path is None or not path.is_file():
        raise ModelMissing(f"model file {spec.file} comes with the Python package {top}, "
                           f"which is not installed{'' if path is None else ' completely'}; "
                           f"install it with: {hint}")
    stat = path.stat()
    # Checked once per process: a package upgrade that changes the weights is refused
    # instead of silently changing results cached under the old version.
    if stat.st_size != spec.size or _sha256_cached(str(path), stat.st_size,
                                                    stat.st_mtime_ns) != spec.sha256:
        raise ModelMismatch(f"{path} is not the file the manifest names (size or sha256 "
                            f"differ; another version of {top}?); install the expected one "
                            f"with: {hint}")
    return path


def locate(spec: FileSpec, directory: Path | None = None) -> Path:
    """The installed path of a manifest file, or ModelMissing naming the fix."""
    if spec.package:
        return _locate_in_package(spec)
    path = path_of(spec, directory)
    if not path.is_file():
        raise ModelMissing(
            f"model file {spec.file} is not installed in {path.parent}; "
            f"install it with: {INSTALL_HINT}"
        )
    if path.stat().st_size != spec.size:
        raise ModelMismatch(
            f"{path} has {path.stat().st_size} bytes, the manifest says {spec.size}; "
            f"reinstall it with: {INSTALL_HINT}"
        )
    return path


@lru_cache(maxsize=None)
def _labels_cached(path: str, member: str, mtime_ns: int) -> tuple[str, ...]:
    if member:
        with zipfile.ZipFile(path) as z:
            text = z.read(member).decode("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def labels(spec: ModelSpec, directory: Path | None = None) -> list[str]:
    """The model's class names, with the manifest's label offset removed."""
    if not spec.labels:
        return []
    if spec.labels.startswith("zip:"):
        path, member = locate(spec, directory), spec.labels[4:]
    else:
        path, member = locate(files()[spec.labels], directory), ""
    names = _labels_cached(str(path), member, path.stat().st_mtime_ns)
    return list(names[spec.label_offset:])
