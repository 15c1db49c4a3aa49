"""Model sessions as a scan uses them: an ONNX session leaves the cores alone between calls."""

from __future__ import annotations

import time

import numpy as np
import pytest

from galprof.vision.runtime import open_session

pytest.importorskip("onnxruntime")


def test_onnx_threads_do_not_spin_after_a_call(shared_models):
    # onnxruntime's worker threads spin by default after each call: ~45 ms of CPU in the
    # 200 ms after one, taken from the decode threads that share the cores in a scan
    session = open_session(shared_models / "face_detection_full_range.onnx", threads=2)
    feed = np.zeros(session.inputs[0].shape, session.inputs[0].dtype)
    for _ in range(3):
        session.run([feed])
    cpu = time.process_time()
    time.sleep(0.2)
    idle_cpu_ms = (time.process_time() - cpu) * 1000
    assert idle_cpu_ms < 15, f"{idle_cpu_ms:.1f} ms of CPU while no call ran"
