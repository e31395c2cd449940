"""``histoviewer stage LABELS.csv [--out FILE]``: CAMELYON17 node labels -> pN stages, in the
CAMELYON17 submission format (patient row, then its node rows).

Exit status (``stage``, ``analyze`` and ``report`` alike): 0 every node has a final label;
``EXIT_UNRESOLVED`` (3) the results are written but at least one node has no final label
(failed or unclassified tissue, no scale, tissue unlike the model's training data, or
``unknown`` in the label file) or a case could not be staged; ``analyze`` gives 1 when a
slide could not be analysed at all; 2 is an error (nothing staged)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

__all__ = ["EXIT_UNRESOLVED", "register", "run_stage"]

EXIT_UNRESOLVED = 3  # written, but a node has no final label: the batch is not complete


def register(sub) -> None:
    p = sub.add_parser(
        "stage", help="pN stage of each patient from node labels (CAMELYON17 CSV)",
        description="Read node labels in the CAMELYON17 format (header 'patient,stage', rows like "
                    "'patient_004_node_3.tif,macro' with negative, itc, micro or macro; patient rows "
                    "are ignored) and write each patient's pN stage (pN0, pN0(i+), pN1mi, pN1, pN2) "
                    "as 'patient_004.zip,pN1' followed by its node rows. 10 or more positive nodes "
                    "(pN3) are outside the CAMELYON17 scheme and stop with an error. A node is its "
                    "patient and node number (patient_004_node_1.tif, .svs and patient_4_node_01 are "
                    "one node): given twice with one label it counts once, with two labels it is an "
                    "error. A node labelled 'unknown' is unresolved: the stage is stated only when "
                    "no label it could have changes it, else 'unknown' (at least ...). Exit status 3 "
                    "when a node is unresolved.")
    p.add_argument("labels", type=Path, metavar="LABELS.csv")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE when it exists (never LABELS.csv)")
    p.add_argument("--json", action="store_true",
                   help="print each stage with its deciding nodes as JSON (the CSV still goes to --out)")
    p.set_defaults(func=run_stage)


def run_stage(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.camelyon17 import (
        read_node_labels,
        stage_cases,
        submission_csv,
        write_submission,
    )
    from histoviewer.core.atomic import check_output

    def warn(message: str) -> None:
        print(f"histoviewer: warning: {message}", file=sys.stderr)

    if args.out is not None:  # before any work: never over the labels read, nor an existing file unasked
        check_output(args.out, inputs=[args.labels], overwrite=args.overwrite)
    results = stage_cases(read_node_labels(args.labels, warn=warn))
    if args.out is not None:
        write_submission(args.out, results)
    if args.json:
        print(strict_dumps([r.to_dict() for r in results], indent=2))
    elif args.out is None:
        sys.stdout.write(submission_csv(results))
    else:
        for r in results:
            print(f"{r.patient}: {r.stage_text} - {r.reason}")
        print(f"wrote {args.out}")
    unresolved = [n.node for r in results for n in r.unresolved]
    if unresolved:
        print(f"histoviewer: {len(unresolved)} node(s) without a final label ({', '.join(unresolved)}); "
              "stages they could change are unknown", file=sys.stderr)
        return EXIT_UNRESOLVED
    return 0
