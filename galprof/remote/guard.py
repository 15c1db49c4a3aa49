"""Connection limits for `galprof serve`: uvicorn's h11 protocol with deadlines and caps.

uvicorn alone lets anyone who reaches the port hold the service: `limit_concurrency`
counts idle connections, so 63 silent sockets make every real request a 503, and no
timeout runs while request headers trickle in. This protocol instead

- gives every connection HEADER_TIMEOUT seconds, from its opening or from the end of
  its previous response, to deliver a complete request head (slowloris, idle TCP or
  TLS connections are closed when it expires, however slowly bytes keep coming);
- keeps at most PENDING_PER_CLIENT connections per client address, and PENDING_TOTAL in
  all, waiting for a request head: new connections over the cap close that address's
  (or everyone's) oldest waiting ones (SWEEP_DELAY later, once the new ones have had
  the time to send their head), so a new client always gets its turn. A
  connection that has carried a request with the right token (the app marks it through
  the TRUST_EXTENSION scope extension) is counted apart, under KEPT_TOTAL: connections
  without the token, however many, never close a client's kept-alive connection;
- on shutdown (SIGTERM), sets SHUTTING_DOWN, which the inference loop checks between
  images so that in-flight work stops within one image.

Connections with a request being answered are never closed by these caps: the app
(server.py) answers 401 and closes before reading any body of a request without the
token, and bounds the body time, the requests at once and their work itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

from uvicorn.protocols.http.h11_impl import H11Protocol

# Seconds for a complete request head (request line and headers): a real client sends
# it in one packet, right after connecting or after reading the previous answer.
HEADER_TIMEOUT = 10.0
# Connections waiting for a request head, per client address and in all (per worker).
PENDING_PER_CLIENT = 32
PENDING_TOTAL = 256
# Seconds between a connection over a cap and closing the oldest ones: a burst of new
# connections from one address must not close a real client's before its request head,
# sent right after connecting, has been read.
SWEEP_DELAY = 0.1
# Kept-alive connections of clients that showed the token, waiting for their next
# request (per worker): only the head deadline and this cap close them.
KEPT_TOTAL = 256
# The ASGI scope extension through which the app marks a connection as the token's.
TRUST_EXTENSION = "galprof.trust"

# Set when the server starts shutting down: work in progress stops at the next image.
SHUTTING_DOWN = threading.Event()


class _Waiting:
    """Connections waiting for a request head, oldest first (one event loop: no lock)."""

    def __init__(self, per_client: int | None, total: int):
        self.per_client, self.total = per_client, total
        # connection -> when it began to wait (loop time), oldest first
        self.all: OrderedDict[GuardedH11Protocol, float] = OrderedDict()
        self.by_client: dict[str, OrderedDict[GuardedH11Protocol, float]] = {}
        self._sweep: asyncio.TimerHandle | None = None

    def add(self, conn: "GuardedH11Protocol") -> None:
        now = conn.loop.time()
        self.by_client.setdefault(conn.client_key, OrderedDict())[conn] = now
        self.all[conn] = now
        over = len(self.all) > self.total or (
            self.per_client is not None and len(self.by_client[conn.client_key]) > self.per_client)
        if over and self._sweep is None:
            self._sweep = conn.loop.call_later(SWEEP_DELAY, self.sweep, conn.loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the oldest waiting connections over the caps, sparing the ones that began
        to wait less than SWEEP_DELAY ago (the next sweep judges them)."""
        self._sweep = None
        settled = loop.time() - SWEEP_DELAY
        again = False
        caps = [] if self.per_client is None else [
            (queue, self.per_client, "per-client") for queue in self.by_client.values()]
        caps.append((self.all, self.total, "total"))
        for queue, cap, kind in caps:
            while len(queue) > cap:
                oldest, since = next(iter(queue.items()))
                if since > settled:
                    again = True
                    break
                self._evict(oldest, kind)
        if again:
            self._sweep = loop.call_later(SWEEP_DELAY, self.sweep, loop)

    def discard(self, conn: "GuardedH11Protocol") -> None:
        self.all.pop(conn, None)
        mine = self.by_client.get(conn.client_key)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_client[conn.client_key]

    def _evict(self, conn: "GuardedH11Protocol", cap: str) -> None:
        self.discard(conn)
        conn.close_idle(f"{cap} cap on connections waiting for a request")


# Connections that never showed the token, and kept-alive ones of clients that did.
WAITING = _Waiting(PENDING_PER_CLIENT, PENDING_TOTAL)
KEPT = _Waiting(None, KEPT_TOTAL)


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a request-head deadline and caps on connections waiting for one."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.client_key = self.client[0] if self.client else "?"
        self.trusted = False
        self._timer: asyncio.TimerHandle | None = None
        self._seen_cycle = None
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_cycle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._follow_cycle()
        if self.cycle is self._seen_cycle and self.cycle.response_complete:
            self._wait_for_head()         # idle keep-alive: the next head has a deadline too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        WAITING.discard(self)
        KEPT.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        SHUTTING_DOWN.set()
        super().shutdown()

    def mark_trusted(self) -> None:
        """The app saw the right token on this connection."""
        self.trusted = True

    def close_idle(self, why: str) -> None:
        """Close a connection that has no request being answered."""
        self._cancel_timer()
        WAITING.discard(self)
        KEPT.discard(self)
        if not self.transport.is_closing():
            self.logger.debug("closing %s:%s: %s", *(self.client or ("?", 0)), why)
            self.transport.close()

    # What the connection waits for, from what uvicorn's h11 protocol has parsed.
    def _follow_cycle(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:
            # A new request head arrived (h11 parsed it and uvicorn started the app).
            self._seen_cycle = cycle
            self._pool().discard(self)
            self._cancel_timer()
            # The app task starts on the loop's next turn, after this: it sees the mark.
            cycle.scope.setdefault("extensions", {})[TRUST_EXTENSION] = self.mark_trusted

    def _wait_for_head(self) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(HEADER_TIMEOUT, self.close_idle,
                                           f"no complete request head in {HEADER_TIMEOUT:g} s")
        self._pool().add(self)

    def _pool(self) -> _Waiting:
        return KEPT if self.trusted else WAITING

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
