"""``ntm import-recordio``: SageMaker RecordIO-protobuf training channels -> the project's dataset folder.

Usage:
    ntm import-recordio --channels DIR --output DIR [--vocab FILE] [--feature-key NAME]
                        [--overwrite] [--rows-per-file N] [--row-group-size N]
                        [--clean] [--stop-words english|none]

``DIR/train/``, ``DIR/validation/`` and ``DIR/test/`` hold the channel files a SageMaker NTM
training job reads (e.g. written by the SDK's ``write_spmatrix_to_sparse_tensor``); the
vocabulary defaults to ``DIR/auxiliary/vocab.txt``. The output is what ``ntm preprocess`` writes
(bag-of-words Parquet per split, ``vocab.txt``, ``manifest.json``), so ``ntm train`` reads it
unchanged (:func:`ntm_spark.core.recordio.import_recordio_channels`). No Spark: pyarrow only.
``--clean``/``--stop-words`` record the text rules the vocabulary was built with, which raw-text
scoring of the trained model applies. Exit codes: 0 written, 1 unreadable input, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    parser = argparse.ArgumentParser(prog="ntm import-recordio", description="SageMaker RecordIO channels -> bag-of-words Parquet.")
    parser.add_argument("--channels", required=True, help="folder with train/ (validation/, test/) RecordIO channel files")
    parser.add_argument("--output", required=True, help="dataset folder to write")
    parser.add_argument("--vocab", default=None, help="vocabulary file (default CHANNELS/auxiliary/vocab.txt)")
    parser.add_argument("--feature-key", default=None, help="Record.features key of the document (default 'values')")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--rows-per-file", type=int, default=200_000)
    parser.add_argument("--row-group-size", type=int, default=1024)
    parser.add_argument("--clean", action="store_true", help="the vocabulary was built with 20 Newsgroups header stripping")
    parser.add_argument("--stop-words", default="english", help="the stop-word rule the vocabulary was built with")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm import-recordio ...``; return the exit code (errors are printed, never raised)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from ntm_spark.core.contract import ContractError
    from ntm_spark.core.recordio import RecordIOError, import_recordio_channels

    try:
        manifest = import_recordio_channels(
            args.channels,
            args.output,
            vocab_path=args.vocab,
            feature_key=args.feature_key,
            overwrite=args.overwrite,
            rows_per_file=args.rows_per_file,
            row_group_size=args.row_group_size,
            clean=args.clean,
            stop_words=args.stop_words,
        )
    except (ContractError, RecordIOError, OSError) as err:
        print(f"ntm import-recordio: {err}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as err:  # bad flag values, a malformed vocabulary file
        print(f"ntm import-recordio: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps({"output": args.output, "documents": manifest["documents"]["per_split"], "vocabulary": manifest["vocabulary"]["size"]}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
