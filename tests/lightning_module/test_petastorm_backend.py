"""The Petastorm backend yields exactly the documents and counts of the Arrow loader.

Runs the backend in ``.venv-petastorm`` (pyarrow 14, numpy 1.26, petastorm 0.13.1;
``scripts/petastorm_env.sh`` builds it) as a subprocess on the same Parquet.
"""

import json
import subprocess
from pathlib import Path

import pytest

from lightning_module.data import ParquetBowDataset, split_files

ROOT = Path(__file__).resolve().parents[2]
PETASTORM_PY = ROOT / ".venv-petastorm" / "bin" / "python"

pytestmark = [
    pytest.mark.petastorm,
    pytest.mark.skipif(
        not PETASTORM_PY.exists(), reason=".venv-petastorm is missing: build it with scripts/petastorm_env.sh"
    ),
]


def _arrow_docs(split_dir, world):
    docs, counts = {}, []
    for rank in range(world):
        n = 0
        for b in ParquetBowDataset(split_files(split_dir.parent, split_dir.name), 32, rank, world, with_ids=True):
            for r, w in enumerate(b["weight"].tolist()):
                if w > 0:
                    lo, hi = b["indptr"][r].item(), b["indptr"][r + 1].item()
                    docs[b["ids"][r]] = [b["indices"][lo:hi].tolist(), b["values"][lo:hi].tolist()]
                    n += 1
        counts.append(n)
    return docs, counts


@pytest.mark.parametrize("pool, shards", [("dummy", 1), ("process", 3)])
def test_petastorm_yields_the_arrow_loaders_documents(bow_corpus, tmp_path, pool, shards):
    split_dir = bow_corpus / "train"
    out = tmp_path / "docs.json"
    proc = subprocess.run(
        [str(PETASTORM_PY), "-m", "lightning_module.petastorm_backend", str(split_dir), "--shards", str(shards),
         "--pool", pool, "--batch-size", "32", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())["shards"]
    petastorm_ids = [i for s in result for i in s["ids"]]
    petastorm_docs = {k: v for s in result for k, v in s["docs"].items()}
    arrow_docs, _ = _arrow_docs(split_dir, shards)
    assert len(petastorm_ids) == len(set(petastorm_ids)) == len(arrow_docs) == 403
    assert petastorm_docs == arrow_docs  # same indices and exactly the same float32 counts
    assert len({s["batches"] for s in result}) == 1  # padded to equal batch counts per shard
