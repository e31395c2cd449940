"""The floor under a cold ``histoviewer analyze``: the same command with no classification.

    python benchmarks/_analyze_floor.py SLIDE OUT REFERENCE_DIR TIMES.json

Runs ``histoviewer analyze SLIDE --out OUT`` in this fresh process exactly as the CLI does
(interpreter start, imports, the model loaded and its onnxruntime session built, the slide
opened, tissue found, the heatmap's thumbnail made, every output written: probability and
domain maps, heatmap.png, lesions, summary, stages.csv), except that the classification
pass (``pipeline.classify_cells``: region reads, resizing, the blank check, the model and
the tissue check's descriptors) is replaced by copying a finished run's results
(``REFERENCE_DIR``: an ``analyze`` output folder of the same slide and model) into the
grid. What remains is what no amount of faster classification can remove.

``TIMES.json`` gets ``time.time()`` at the moment classification would start
(``classify_start``) and when it would end (``classify_end``); the caller, which knows
when it started the process, turns them into the start-up floor and the outputs floor.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from histoviewer.cli import main as cli_main
from histoviewer.core.inference import analyze as analyze_module
from histoviewer.core.inference.grid import ENCODED, CellState
from histoviewer.core.inference.model_loading import loaded_model
from histoviewer.core.inference.pipeline import PipelineTimes


def main() -> int:
    slide, out, reference, times_path = (
        sys.argv[1],
        sys.argv[2],
        Path(sys.argv[3]),
        Path(sys.argv[4]),
    )
    marks: dict[str, float] = {}
    probability = tifffile.imread(reference / "probability.tiff").reshape(-1)
    domain_file = reference / "domain.tiff"
    domain = tifffile.imread(domain_file).reshape(-1) if domain_file.exists() else None
    failed_code = ENCODED[CellState.FAILED]

    def copy_results(grid, cutter, model, cells, **_kwargs) -> PipelineTimes:
        """Fill ``grid`` with the reference run's results (no reads, no model calls)."""
        marks["classify_start"] = time.time()
        loaded_model(model)  # a real run waits for the model at its first call too
        cells = np.asarray(cells, np.int64)
        failed = cells[probability[cells] == failed_code]
        ok = cells[probability[cells] != failed_code]
        grid.set_values(ok, probability[ok], None if domain is None else domain[ok])
        grid.set_failed(failed)
        marks["classify_end"] = time.time()
        return PipelineTimes(patches=int(ok.size), failed=int(failed.size))

    analyze_module.classify_cells = copy_results  # analyze imported it by name
    rc = cli_main(["analyze", slide, "--out", out])
    marks["exit"] = time.time()
    times_path.write_text(json.dumps(marks))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
