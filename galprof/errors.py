"""Typed errors of the galprof library. The CLI turns them into one-line messages and exit 1."""


class GalprofError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class SetupError(GalprofError):
    """Something galprof needs before it can run is missing or wrong (a folder, a database)."""


class ModelMissing(SetupError):
    """A model file is not installed; the message names the command that installs it."""


class ModelMismatch(SetupError):
    """A model file does not match its manifest entry (hash, shape, labels)."""


class UnknownModel(GalprofError):
    """A model id that the manifest does not know."""


class DatabaseBusy(SetupError):
    """Another galprof process holds the database for writing."""


class StageFailed(SetupError):
    """A stage failed on the first files it ran on: its model or runtime is broken."""

    def __init__(self, stage, content_hashes: list[str], reason: str):
        models = getattr(stage, "models", None)
        what = ", ".join(f"{m.id} ({m.file})" for m in models()) if callable(models) else ""
        super().__init__(
            f"the {stage.name} stage failed on each of the first {len(content_hashes)} files "
            f"it ran on, last with: {reason.split(': ', 1)[-1]}. Its model"
            + (f" {what}" if what else "") + " or the runtime may be broken: check with "
            "`galprof models verify`, reinstall with `galprof models install`, or leave the "
            "stage out with --stages. Everything read so far is kept.")
        self.stage_name = stage.name
        self.content_hashes = list(content_hashes)


class MediaError(GalprofError):
    """One media file cannot be read. Recorded against the file; never aborts a scan."""

    def __init__(self, path, reason: str):
        reason = " ".join(str(reason).split())      # one line, whatever a library said
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
