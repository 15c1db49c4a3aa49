"""`galprof benchmark` end to end on a tiny generated set (figures are not asserted, only sane)."""

import json

from click.testing import CliRunner
from PIL import Image

from galprof.cli import cli


def test_benchmark_json():
    r = CliRunner().invoke(cli, ["benchmark", "--models", "mobilenet_v2", "--runs", "2",
                                 "--photos", "3", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    (row,) = report["models"]
    assert row["model"] == "mobilenet_v2" and row["size_bytes"] == 3610798
    assert all(cell["mean_ms"] > 0 for cell in row["latency"])
    e2e = report["end_to_end"]
    assert e2e["media"] == 3 and e2e["frames"] == 3
    assert set(e2e["stage_seconds"]) == {"objects", "scenes"}
    assert e2e["photos_per_s"] > 0 and 0 <= e2e["outside_models_share"] <= 1
    assert e2e["peak_rss_mb"] > 10


def test_benchmark_generates_12mp_photos(tmp_path):
    from galprof.bench import generate_photos

    (p,) = generate_photos(tmp_path, 1)
    assert Image.open(p).size == (4000, 3000)
