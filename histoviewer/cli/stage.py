"""``histoviewer stage LABELS.csv [--out FILE]``: CAMELYON17 node labels -> pN stages, in the
CAMELYON17 submission format (patient row, then its node rows)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run_stage"]


def register(sub) -> None:
    p = sub.add_parser(
        "stage", help="pN stage of each patient from node labels (CAMELYON17 CSV)",
        description="Read node labels in the CAMELYON17 format (header 'patient,stage', rows like "
                    "'patient_004_node_3.tif,macro' with negative, itc, micro or macro; patient rows "
                    "are ignored) and write each patient's pN stage (pN0, pN0(i+), pN1mi, pN1, pN2) "
                    "as 'patient_004.zip,pN1' followed by its node rows. 10 or more positive nodes "
                    "(pN3) are outside the CAMELYON17 scheme and stop with an error.")
    p.add_argument("labels", type=Path, metavar="LABELS.csv")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here (default: stdout)")
    p.add_argument("--json", action="store_true",
                   help="print each stage with its deciding nodes as JSON (the CSV still goes to --out)")
    p.set_defaults(func=run_stage)


def run_stage(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.camelyon17 import read_node_labels, stage_cases, submission_csv, write_submission

    results = stage_cases(read_node_labels(args.labels))
    if args.out is not None:
        write_submission(args.out, results)
    if args.json:
        print(strict_dumps([r.to_dict() for r in results], indent=2))
    elif args.out is None:
        sys.stdout.write(submission_csv(results))
    else:
        for r in results:
            print(f"{r.patient}: {r.stage.value} - {r.reason}")
        print(f"wrote {args.out}")
    return 0
from histoviewer.core.strict_json import strict_dumps
