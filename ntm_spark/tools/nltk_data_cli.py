"""``ntm data``: install the offline WordNet data, or pack it for ``spark-submit --archives``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from ntm_spark.core.nltk_data import DEBIAN_WORDNET_DIR, NltkDataError, find_wordnet, install_wordnet, make_archive
from ntm_spark.core.paths import nltk_data_dir, state_dir


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm data wordnet|archive|check``."""
    parser = argparse.ArgumentParser(prog="ntm data", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p_wn = sub.add_parser("wordnet", help="copy WordNet 3.0 from Debian's files into <state>/nltk_data ($NTM_HOME or <repo>/.ntm)")
    p_wn.add_argument("--src", default=str(DEBIAN_WORDNET_DIR), help="folder with Debian's WordNet files")
    p_wn.add_argument("--dest", default=str(nltk_data_dir()), help="NLTK data root to fill")
    p_wn.add_argument("--download", action="store_true", help="fall back to nltk.download when the files are missing")
    p_ar = sub.add_parser("archive", help="pack the data for spark-submit --archives FILE#nltk_data")
    p_ar.add_argument("--out", default=str(state_dir() / "nltk_data.tar.gz"))
    sub.add_parser("check", help="print where WordNet is found, or why not")
    args = parser.parse_args(argv)
    try:
        if args.action == "wordnet":
            try:
                root = install_wordnet(Path(args.src), Path(args.dest))
            except NltkDataError:
                if not args.download:
                    raise
                root = find_wordnet(download=True)
            os.environ["NLTK_DATA"] = str(root)
            from ntm_spark.core.text import NOUN_MORPHY_CACHE, load_noun_lemmatizer

            load_noun_lemmatizer()  # writes the noun cache that Spark's Python workers load in ~50 ms
            print(f"WordNet ready under {root}/corpora/wordnet (noun lemma cache: corpora/{NOUN_MORPHY_CACHE})")
        elif args.action == "archive":
            out = make_archive(Path(args.out))
            print(f"wrote {out}; submit with --archives {out}#nltk_data --conf spark.executorEnv.NLTK_DATA=./nltk_data")
        else:
            print(f"WordNet found under {find_wordnet(download=False)}")
    except NltkDataError as err:
        print(f"ntm data: {err}", file=sys.stderr)
        return 1
    return 0
