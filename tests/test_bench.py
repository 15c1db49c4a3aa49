"""galprof.bench: the per-model latency table, on the real installed models."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from galprof import bench
from galprof.errors import ModelMissing
from galprof.vision import manifest


def test_mobilenet_latency_row():
    [row] = bench.model_latency_table(["mobilenet_v2"], runs=3)
    assert row["model"] == "mobilenet_v2"
    assert row["size_bytes"] == 3610798 and row["size_mb"] == 3.61
    assert [cell["threads"] for cell in row["latency"]] == list(bench.default_thread_counts())
    for cell in row["latency"]:
        assert cell["mean_ms"] > 0 and cell["std_ms"] >= 0 and cell["runs"] == 3


def test_render_table_has_a_column_per_thread_count():
    rows = bench.model_latency_table(["blazeface_full"], runs=2, threads=(1, 2))
    console = Console(width=160, record=True)
    console.print(bench.render_table(rows))
    text = console.export_text()
    assert "1 thread)" in text and "2 threads)" in text
    assert "blazeface_full" in text and "1.08" in text and "±" in text


def test_missing_model_names_the_install_command(tmp_path):
    with pytest.raises(ModelMissing, match="galprof models install"):
        bench.model_latency_table(["mobilenet_v2"], runs=1, directory=tmp_path)


@pytest.mark.parametrize("model_id", ["yolox_nano_onnx", "hse_faces", "mobilenet_v2"])
def test_model_input_matches_the_graph(model_id):
    spec = manifest.get(model_id)
    from galprof.vision.runtime import open_session
    session = open_session(manifest.locate(spec), 1)
    info = session.inputs[0]
    feed = bench.model_input(spec, info, bench.synthetic_photo())
    assert feed.shape == info.shape and feed.dtype == info.dtype
    assert np.ptp(feed) > 0       # a real-looking picture, not a constant


def test_synthetic_photo_is_deterministic():
    a, b = bench.synthetic_photo(), bench.synthetic_photo()
    assert a.dtype == np.uint8 and a.shape == (480, 640, 3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("model_id", ["ppocr_v4_det", "ppocr_v4_rec"])
def test_dynamic_inputs_are_timed_at_the_manifests_bench_shape(model_id):
    """The text models take any size; timed at 1 x 1 their latency would mean nothing."""
    spec = manifest.get(model_id)
    from galprof.vision.runtime import open_session
    session = open_session(manifest.locate(spec), 1)
    feed = bench.model_input(spec, session.inputs[0], bench.synthetic_photo())
    assert list(feed.shape) == spec.input["bench_shape"]
    assert feed.dtype == np.float32 and np.ptp(feed) > 0
    outputs = session.run([feed])
    out = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs[0]
    assert np.asarray(out).shape[0] == 1         # the graph ran on that shape
