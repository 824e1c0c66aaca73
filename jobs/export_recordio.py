"""``ntm export-recordio``: the project's dataset folder -> SageMaker NTM RecordIO-protobuf training channels.

Usage:
    ntm export-recordio --data DIR --output DIR [--records-per-file N] [--overwrite]

Writes ``DIR/train/``, ``validation/``, ``test/`` RecordIO files (sparse float32 tensors under
``features["values"]``, the document id as ``uid``) and ``DIR/auxiliary/vocab.txt``, so a
SageMaker NTM estimator trains on the same documents as ``ntm train``
(:func:`ntm_spark.core.recordio.export_recordio_channels`). Exit codes: 0 written, 1 unreadable
input, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    parser = argparse.ArgumentParser(prog="ntm export-recordio", description="Bag-of-words Parquet -> SageMaker RecordIO channels.")
    parser.add_argument("--data", required=True, help="dataset folder written by ntm preprocess or ntm import-recordio")
    parser.add_argument("--output", required=True, help="folder to write the channels into")
    parser.add_argument("--records-per-file", type=int, default=100_000)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm export-recordio ...``; return the exit code (errors are printed, never raised)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from ntm_spark.core.contract import ContractError
    from ntm_spark.core.recordio import export_recordio_channels

    try:
        counts = export_recordio_channels(args.data, args.output, records_per_file=args.records_per_file, overwrite=args.overwrite)
    except (ContractError, OSError) as err:
        print(f"ntm export-recordio: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"ntm export-recordio: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"output": args.output, "documents": counts}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
