"""The remote tier: `galprof serve` (server.py) runs the heavier, more accurate models on
public photos; `offload` (client.py) sends them there and stores what comes back.

The wire format is the device stages' payload shapes plus `tier` and model versions,
so the store and the profile consume remote results unchanged. Limits and the
protocol constants shared by both sides live here: the client must stay inside them.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Callable

# What the server accepts is exactly what the client sends: a baseline JPEG (no other
# format: Pillow would hand an EPS to Ghostscript), at most MAX_SIDE pixels on its long
# side (the client's UPLOAD_LONG_SIDE), checked from the JPEG header before decoding.
MAX_SIDE = 1024
MAX_PIXELS = MAX_SIDE * MAX_SIDE
# Long side over short side. Bounds what one image costs: the scene models resize the
# short side to 224 px, so a 1024x3 strip would become 76,000x224 pixels. A phone's
# panorama at 1024 px is about 1024x200 (5:1).
MAX_ASPECT = 16
# Bytes of one JPEG: a 1024x1024 photo at the client's quality 90 is 0.1-0.5 MB, pure
# noise 1 MB; 4 MB only admits files made to be big.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
# Images in one batch request (a video's sampled frames; the client sends an evenly
# spaced subset of longer samples). With MAX_PIXELS this bounds the work of one
# request: 16 MP, about 5 s of inference on one core (bench/load_server.py --worst).
MAX_BATCH_IMAGES = 16
MAX_REQUEST_PIXELS = MAX_BATCH_IMAGES * MAX_PIXELS
# Bodies above this size get 413 before they are read to the end: a photo as the client
# sends it is ~0.3 MB, a batch of 16 video frames ~3 MB.
MAX_BODY_BYTES = 20 * 1024 * 1024
# The header carrying the bearer token, and the one carrying the client's content hash
# of the media item (so the server's request log can be checked against the client's).
ITEM_HEADER = "X-Galprof-Item"
API_PREFIX = "/v1"
# A token file is a few dozen characters; reading more is a mistake (or /dev/zero).
MAX_TOKEN_FILE_BYTES = 4096


class TokenFileWarning(UserWarning):
    """A token file that others can read (emitted when read_token gets no on_warning)."""


def read_token(token_file, env_var: str, min_length: int = 1, *,
               refuse_writable: bool = False,
               on_warning: Callable[[str], None] | None = None) -> str:
    """A bearer token from `token_file`, else from $env_var; SetupError naming the fix.

    Like ssh with a private key, a token file that other users can read is reported
    (one line to `on_warning`, else a TokenFileWarning); one they can write is refused
    when `refuse_writable` (the server: whoever can write it chooses the token).
    """
    from galprof.errors import SetupError

    if token_file is not None:
        try:
            with open(token_file, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as e:
            raise SetupError(f"cannot read token file {token_file}: {e.strerror}") from None
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise SetupError(f"token file {token_file} is over {MAX_TOKEN_FILE_BYTES} bytes; "
                             "it should hold just the token")
        try:
            token = raw.decode().strip()
        except UnicodeDecodeError:
            raise SetupError(f"token file {token_file} is not text") from None
        source = str(token_file)
        _check_mode(Path(token_file), mode, refuse_writable, on_warning)
    else:
        token = os.environ.get(env_var, "").strip()
        source = f"${env_var}"
    if not token:
        raise SetupError(f"no bearer token: {source} is empty or unset (pass --token-file or set "
                         f"${env_var}; make one with `(umask 077; python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))' > token)`)")
    if len(token) < min_length:
        raise SetupError(f"the token in {source} is too short (at least {min_length} characters)")
    return token


def _check_mode(path: Path, mode: int, refuse_writable: bool,
                on_warning: Callable[[str], None] | None) -> None:
    from galprof.errors import SetupError

    if not stat.S_ISREG(mode):
        return                  # a pipe or /dev/fd/N from a secrets manager: no mode to judge
    shown = f"{stat.S_IMODE(mode):04o}"
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and refuse_writable:
        raise SetupError(f"token file {path} can be written by other users (mode {shown}); "
                         f"run `chmod 600 {path}`")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        message = (f"token file {path} is accessible by other users (mode {shown}); "
                   f"run `chmod 600 {path}`")
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(message, TokenFileWarning, stacklevel=3)
