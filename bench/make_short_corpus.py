"""The short-document benchmark corpus (issue 18): a preprocessed dataset cut to each document's first N counted words.

Real-time tagging serves short messages, so topic quality is measured on short documents too.
From a preprocessed 20 Newsgroups dataset (``ntm preprocess``), this re-reads each kept
document's text from the archive, normalizes it with the dataset's own text rules
(:func:`ntm_spark.core.contract.text_rules_from_manifest`), keeps the tokens in the
dataset's vocabulary *in document order*, cuts them to the first ``--words`` (60 by default),
and writes the same splits, ids, labels and vocabulary with those counts. Only the length
changes, so a figure on it is comparable with the full-length one.

Usage:
    python bench/make_short_corpus.py --data .ntm/data/20newsgroups --out .ntm/data/20newsgroups-short60 --words 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ntm_spark.core.contract import read_manifest, read_vocabulary, text_rules_from_manifest  # noqa: E402
from ntm_spark.core.schema import SPLITS, bow_arrow_schema  # noqa: E402
from ntm_spark.core.text import decode_document_bytes, get_normalizer  # noqa: E402


def archive_texts(path: str, wanted: set[str]) -> dict[str, str]:
    """Read the archive members whose id (``train/<group>/<n>``, ``test/...``) is wanted."""
    folder = {"20news-bydate-train": "train", "20news-bydate-test": "test"}
    texts = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in folder:
                continue
            doc_id = "/".join([folder[parts[0]], *parts[1:]])
            if doc_id in wanted:
                texts[doc_id] = decode_document_bytes(tar.extractfile(member).read())[0]
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--words", type=int, default=60)
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    manifest = read_manifest(data)
    vocab = read_vocabulary(data)
    index = {w: i for i, w in enumerate(vocab)}
    normalizer = get_normalizer(**text_rules_from_manifest(manifest))
    tables = {s: pq.read_table(data / s) for s in SPLITS if (data / s).exists()}
    wanted = {i for t in tables.values() for i in t.column("id").to_pylist()}
    texts = archive_texts(manifest["source"]["path"], wanted)
    missing = wanted - set(texts)
    if missing:
        raise SystemExit(f"{len(missing)} ids of {data} are not in {manifest['source']['path']} (e.g. {sorted(missing)[:2]})")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    stats = {}
    for split, table in tables.items():
        rows = {"id": [], "label": [], "n_words": [], "indices": [], "values": []}
        for doc_id, label in zip(table.column("id").to_pylist(), table.column("label").to_pylist()):
            tokens = [index[t] for t in normalizer.normalize(texts[doc_id]) if t in index][: args.words]
            counts = sorted(Counter(tokens).items())
            rows["id"].append(doc_id)
            rows["label"].append(label)
            rows["n_words"].append(len(tokens))
            rows["indices"].append([i for i, _ in counts])
            rows["values"].append([float(c) for _, c in counts])
        (out / split).mkdir()
        pq.write_table(pa.table(rows, schema=bow_arrow_schema()), out / split / "part-00000.parquet", row_group_size=1024)
        stats[split] = {"documents": table.num_rows, "mean_words": sum(rows["n_words"]) / max(1, table.num_rows)}
    shutil.copy(data / "vocab.txt", out / "vocab.txt")
    manifest = dict(manifest)
    manifest["derived"] = {"from": str(data), "by": "bench/make_short_corpus.py", "first_counted_words": args.words, "splits": stats}
    docs = manifest.setdefault("documents", {})
    docs["tokens"] = int(sum(s["mean_words"] * s["documents"] for s in stats.values()))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
