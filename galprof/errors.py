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


class MediaError(GalprofError):
    """One media file cannot be read. Recorded against the file; never aborts a scan."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
