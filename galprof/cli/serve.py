"""`galprof serve`: run the accurate remote tier for public photos."""

from __future__ import annotations

from pathlib import Path

import click

from galprof.cli.common import library_errors, threads_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; only this machine by default. Use 0.0.0.0 to accept "
                   "other machines (then also use TLS).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True,
              help="TCP port to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding the bearer token clients must send "
                   "(default: $GALPROF_SERVER_TOKEN).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TLS certificate (PEM) to serve https; needs --key.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TLS private key (PEM) for --cert.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes, each with its own models (about 60 MB each).")
@threads_option
@click.option("--request-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append one JSON line per received image (time, sha256, size, the client's "
                   "item hash, accepted or why not) to this file, created private (0600).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="Server log level (stderr).")
@library_errors
def serve(host, port, token_file, cert, key, workers, threads, request_log, log_level):
    """Serve the accurate tier (tiled YOLOX-Nano, two-model scene ensemble) over HTTP.

    Clients send only public photos (`galprof scan --remote URL`), as baseline JPEGs of
    at most 1024 px. Every request but GET /health needs the bearer token (a token file
    others can write is refused, one they can read is warned about); other formats get
    415, bodies over 20 MB, images over 1024 px or 16:1 and batches over 16 images 413.
    Idle connections are closed after 10 s. See docs/remote.md for the limits, TLS and
    reverse proxies.

    \b
    Example:
        python -c 'import secrets; print(secrets.token_urlsafe(32))' > ~/.galprof-token
        chmod 600 ~/.galprof-token
        galprof serve --token-file ~/.galprof-token --workers 2
        galprof serve --host 0.0.0.0 --cert cert.pem --key key.pem --token-file token
    """
    from galprof.remote.server import read_token, serve as run

    token = read_token(token_file,
                       on_warning=lambda message: click.echo(f"Warning: {message}", err=True))
    run(host, port, token, workers=workers, cert=cert, key=key, request_log=request_log,
        threads=threads, log_level=log_level)
