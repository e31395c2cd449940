"""Handcrafted features and the tissue check: ms per patch before and after, same run (issue 15).

Times ``extract_features`` (the handcrafted model's input) and ``domain.tissue_descriptor``
(the out-of-domain tissue check every analysis runs on a sample of patches) on real
kaggle-sample patches (96 px at the model's 0.972 um/px), for this tree and for a baseline
tree (default: main at 9757568, unpacked with ``git archive`` into a temporary folder). Each
side runs in its own subprocess with its own tree first on ``sys.path``; rounds alternate
old/new so machine noise hits both alike. Then it checks that the outputs are bit-identical.

    PYTHONPATH=. python benchmarks/bench_features.py [--n 512] [--rounds 3] [--baseline 9757568]

Needs ../shared/data/patches/kaggle-sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAGGLE = REPO.parent / "shared" / "data" / "patches" / "kaggle-sample"

_WORKER = r"""
import json, sys, time
import numpy as np
from histoviewer.core.models.domain import tissue_descriptor
from histoviewer.core.models.features import extract_features
x = np.load(sys.argv[1]); mpp = float(sys.argv[2]); out = sys.argv[3]
times = {}
for name, fn in (("extract_features", extract_features), ("tissue_descriptor", tissue_descriptor)):
    fn(x[:8], mpp)  # warm-up: imports, caches
    t0 = time.perf_counter(); r = fn(x, mpp); times[name] = (time.perf_counter() - t0) / len(x) * 1e3
    np.save(f"{out}-{name}.npy", r)
print(json.dumps(times))
"""


def _run(tree: Path, patches: Path, mpp: float, out: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run(
        [sys.executable, "-c", _WORKER, str(patches), str(mpp), out],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n",
        type=int,
        default=512,
        help="kaggle-sample patches (train split, first N)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", default="9757568", help="commit of the baseline tree")
    args = ap.parse_args()
    if not KAGGLE.is_dir():
        sys.exit(f"kaggle-sample not found at {KAGGLE}")
    sys.path.insert(0, str(REPO))
    import numpy as np

    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.patches.open import open_patch_set

    spec = InputSpec()
    ps = open_patch_set(KAGGLE, spec, layout="kaggle", split="train")
    x = ps.read(list(range(min(args.n, len(ps)))))
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        np.save(Path(tmp) / "x.npy", x)
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            runs["before"].append(
                _run(base, Path(tmp) / "x.npy", spec.mpp, f"{tmp}/before")
            )
            runs["after"].append(
                _run(REPO, Path(tmp) / "x.npy", spec.mpp, f"{tmp}/after")
            )
        print(
            f"{len(x)} kaggle-sample patches, {x.shape[1]} px at {spec.mpp} um/px; "
            f"baseline {args.baseline}; {args.rounds} alternating rounds, best (min) ms/patch of each side; "
            f"load {os.getloadavg()[0]:.2f}"
        )
        print(f"{'function':20s} {'before':>8s} {'after':>8s} {'speed-up':>9s}  equal")
        for name in ("extract_features", "tissue_descriptor"):
            before = min(r[name] for r in runs["before"])
            after = min(r[name] for r in runs["after"])
            a = np.load(f"{tmp}/before-{name}.npy")
            b = np.load(f"{tmp}/after-{name}.npy")
            equal = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
            print(
                f"{name:20s} {before:8.3f} {after:8.3f} {before / after:8.2f}x  "
                f"{'bit-identical' if equal else 'DIFFERENT'}"
            )


if __name__ == "__main__":
    main()
