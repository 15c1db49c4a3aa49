"""The remote tier: `galprof serve` (server.py) runs the heavier, more accurate models on
public photos; `offload` (client.py) sends them there and stores what comes back.

The wire format is the device stages' payload shapes plus `tier` and model versions,
so the store and the profile consume remote results unchanged. Limits and the
protocol constants shared by both sides live here.
"""

from __future__ import annotations

# Bodies above this size get 413 before they are read to the end: a phone photo
# re-encoded at 1024 px is ~0.3 MB, a batch of 40 video frames ~10 MB.
MAX_BODY_BYTES = 20 * 1024 * 1024
# Images above this many pixels get 413 before decoding (a small PNG can hold a huge
# canvas): 40 MP is more than any phone camera's photo.
MAX_PIXELS = 40_000_000
# Images in one batch request: bounds the work one request can ask for.
MAX_BATCH_IMAGES = 64
# The header carrying the bearer token, and the one carrying the client's content hash
# of the media item (so the server's request log can be checked against the client's).
ITEM_HEADER = "X-Galprof-Item"
API_PREFIX = "/v1"


def read_token(token_file, env_var: str, min_length: int = 1) -> str:
    """A bearer token from `token_file`, else from $env_var; SetupError naming the fix."""
    import os
    from pathlib import Path

    from galprof.errors import SetupError

    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise SetupError(f"cannot read token file {token_file}: {e.strerror}") from None
        source = str(token_file)
    else:
        token = os.environ.get(env_var, "").strip()
        source = f"${env_var}"
    if not token:
        raise SetupError(f"no bearer token: {source} is empty or unset (pass --token-file or set "
                         f"${env_var}; make one with `python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))' > token`)")
    if len(token) < min_length:
        raise SetupError(f"the token in {source} is too short (at least {min_length} characters)")
    return token
