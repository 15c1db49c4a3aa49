"""Model sessions as a scan uses them: an ONNX session leaves the cores alone between
calls, and opening TFLite models leaves the other threads' stderr alone."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from galprof.vision.runtime import open_session

# A fresh process: two threads open their first TFLite models at once, then a thread
# writes numbered lines straight to fd 2 while more models are opened.
_OPEN_WHILE_WRITING = r"""
import os, sys, threading
from pathlib import Path
from galprof.vision.runtime import open_session

models = Path(sys.argv[1])
first = [threading.Thread(target=open_session, args=(models / name, 1))
         for name in ("mobilenet_v2_1.0_224_quant.tflite", "yolox_nano.tflite")]
for t in first:
    t.start()
for t in first:
    t.join()
os.write(2, b"after the first models\n")
stop = threading.Event()

def write():
    n = 0
    while not stop.is_set() and n < 200_000:
        os.write(2, b"line %d\n" % n)
        n += 1
    os.write(2, b"wrote %d\n" % n)

writer = threading.Thread(target=write)
writer.start()
for name in 3 * ("efficientnet_lite0_int8.tflite", "face_detection_full_range.tflite",
                 "hse_age_gender_identity_int8.tflite", "mobilenet_v2_1.0_224_quant.tflite",
                 "yolox_nano.tflite"):
    open_session(models / name, 1)
stop.set()
writer.join()
"""


def test_only_a_process_first_tflite_model_silences_stderr(shared_models):
    # The TFLite runtime prints an INFO line to fd 2 at a process's first allocation, which
    # galprof keeps out of `--quiet` output by pointing fd 2 at /dev/null for it, and for no
    # other: fd 2 is the whole process's, and silencing every model lost the lines other
    # threads printed meanwhile (a scan's error for a bad file), 24-36 % of them here.
    out = subprocess.run([sys.executable, "-c", _OPEN_WHILE_WRITING, str(shared_models)],
                         capture_output=True, timeout=300)
    lines = out.stderr.decode().splitlines()
    assert out.returncode == 0, lines[-5:]
    assert not [line for line in lines if "XNNPACK" in line]
    assert "after the first models" in lines      # fd 2 given back after concurrent first models
    wrote = int(lines[-1].removeprefix("wrote "))
    written = {int(line.split()[1]) for line in lines if line.startswith("line ")}
    assert wrote > 100 and written == set(range(wrote))


def test_onnx_threads_do_not_spin_after_a_call(shared_models):
    pytest.importorskip("onnxruntime")
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
