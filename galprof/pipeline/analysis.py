"""Frame analyses ahead of the stages' runs, two at a time.

A stage's work on one frame (Stage.analyse: its model calls, kept on the frame) does not
depend on the other frames, so the frames of the items decoded ahead can be analysed
before the inference thread reaches them: a helper thread takes them in line order, and
the inference thread takes them too while it waits for a decode. Two frames are analysed
at once, each model at its share of the cores (stages.ANALYSES_AT_ONCE): on 2 cores a
model call at one thread spends none of its time waiting for its second thread, which
the decode threads keep busy, so the same work costs less CPU (the phone roll of 200,
alternated: 46-48 CPU s against 49-51, 7.6-7.9 media/s against 6.7-7.0; docs/devices.md).

A stage runs on one thread at a time (its lock: a model session is not reentrant, and
its `run` reads what its analyses kept), so the two analyses at once are of different
stages. The helper takes an item's stages in the reverse of the pipeline's order, so it
meets the inference thread, which runs them in order, in the middle.
"""

from __future__ import annotations

import threading
import time

from galprof.stages import Frame, Stage

# How long the helper sleeps when every waiting analysis is of a stage another thread holds.
BUSY_RETRY_SECONDS = 0.003


class BusyTime:
    """The wall time in which at least one thread is inside (`with busy:`): the union of
    their intervals, where a sum would count two at once twice."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._since = 0.0
        self.seconds = 0.0

    def __enter__(self):
        with self._lock:
            if not self._inside:
                self._since = time.perf_counter()
            self._inside += 1

    def __exit__(self, *exc):
        with self._lock:
            self._inside -= 1
            if not self._inside:
                self.seconds += time.perf_counter() - self._since


def analysable(stage: Stage) -> bool:
    """Whether a stage's per-frame work can run ahead (it has `analyse` and reads no
    other stage's payload)."""
    return hasattr(stage, "analyse") and not stage.requires


class Analyses:
    """The analyses waiting, as (frame, stage) in line order, and the stages' locks.

    `stage_seconds` (stage name -> seconds, the summary's) gets the time of every
    analysis and run, whichever thread ran it; `busy` the wall time in which any ran."""

    def __init__(self, helpers: int, stage_seconds: dict[str, float]):
        self.busy = BusyTime()
        self._locks: dict[str, threading.Lock] = {}
        self._loaded: set[str] = set()
        self._waiting: list[tuple[Frame, Stage]] = []
        self._changed = threading.Condition()
        self._closed = False
        self.stage_seconds = stage_seconds
        self._helpers = [threading.Thread(target=self._help, name=f"galprof-analyse-{i}",
                                          daemon=True) for i in range(helpers)]
        for thread in self._helpers:
            thread.start()

    def _lock(self, stage: Stage) -> threading.Lock:
        """The stage's lock: whoever calls the stage holds it."""
        with self._changed:
            return self._locks.setdefault(stage.name, threading.Lock())

    def load(self, stage: Stage) -> None:
        """Load the stage's models, once (lazily: an unchanged re-scan loads none)."""
        with self._lock(stage):
            self._load(stage)

    def _load(self, stage: Stage) -> None:
        if stage.name not in self._loaded:
            stage.load()
            self._loaded.add(stage.name)

    def unload(self, stage: Stage) -> None:
        """Let go of the stage's models if it has been loaded (Stage.unload, where it has
        one); the next load opens them again."""
        with self._lock(stage):
            if stage.name in self._loaded:
                self._loaded.discard(stage.name)
                unload = getattr(stage, "unload", None)
                if unload is not None:
                    unload()

    def offer(self, frames: list[Frame], stages: list[Stage]) -> None:
        """Decode thread: the analyses of these frames (the stages an item lacks)."""
        units = [(frame, stage) for stage in reversed([s for s in stages if analysable(s)])
                 for frame in frames if frame.same_as is None]
        if units:
            with self._changed:
                self._waiting += units
                self._changed.notify()

    def discard(self, frames: list[Frame]) -> None:
        """An item is finished: its analyses still waiting are not needed (and would
        keep its frames alive)."""
        gone = {id(frame) for frame in frames}
        with self._changed:
            self._waiting = [u for u in self._waiting if id(u[0]) not in gone]

    def run(self, stage: Stage, frames: list[Frame], upstream: dict):
        """Inference thread: the stage's run on an item, after its analyses of the frames
        no other thread has done, all with the stage's lock held."""
        with self._lock(stage):
            if analysable(stage):
                for frame in frames:
                    if frame.same_as is None:
                        self._analyse_one(stage, frame)
            started = time.perf_counter()
            try:
                with self.busy:
                    return stage.run(frames, upstream)
            finally:
                self._count(stage, started)

    def take_one(self) -> bool:
        """Run the first waiting analysis whose stage no thread holds; False when there
        is none."""
        with self._changed:
            for i, (frame, stage) in enumerate(self._waiting):
                lock = self._lock(stage)
                if lock.acquire(blocking=False):
                    del self._waiting[i]
                    break
            else:
                return False
        try:
            self._analyse_one(stage, frame)
        finally:
            lock.release()
        return True

    def _analyse_one(self, stage: Stage, frame: Frame) -> None:
        started = time.perf_counter()
        try:
            self._load(stage)
            with self.busy:
                stage.analyse(frame)
        except Exception:
            pass            # the stage's run meets the failure again and reports it
        finally:
            self._count(stage, started)

    def _count(self, stage: Stage, started: float) -> None:
        """Add the time since `started` to the stage's (with its lock held)."""
        self.stage_seconds[stage.name] = round(
            self.stage_seconds.get(stage.name, 0.0) + time.perf_counter() - started, 4)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()
        for thread in self._helpers:
            thread.join()

    def _help(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
            if not self.take_one():
                with self._changed:
                    self._changed.wait(BUSY_RETRY_SECONDS)
