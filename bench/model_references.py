"""Print the `[models.ID.check]` tables of models/manifest.toml from real model files.

The reference outputs that a converted file is checked by (galprof/vision/convert.py) are
its outputs on the fixed probe image. This script computes them from a folder of known-good
files and prints the TOML to paste into the manifest; the tolerance stays as it is there.

    PYTHONPATH=$PWD python3 bench/model_references.py ../shared/models hse_faces hse_faces_onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from galprof.vision import convert, manifest


def check_table(model_id: str, folder: Path) -> str:
    spec = manifest.get(model_id)
    tolerance = spec.check.get("tolerance", 0.01)
    reference = convert.reference_of(convert.probe_outputs(spec, folder / spec.file))
    lines = [f"[models.{model_id}.check]",
             f"tolerance = {tolerance:g}"]
    for name, ref in reference.items():
        top = ", ".join(f"[{i}, {v:.6g}]" for i, v in ref["top"])
        lines.append(f'[models.{model_id}.check.outputs."{name}"]')
        lines.append(f"l2 = {ref['l2']:.6g}")
        lines.append(f"top = [{top}]")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding the known-good model files")
    parser.add_argument("models", nargs="+", help="model ids")
    args = parser.parse_args()
    for model_id in args.models:
        print(check_table(model_id, args.folder))
        print()


if __name__ == "__main__":
    main()
