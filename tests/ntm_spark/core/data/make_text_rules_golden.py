"""Write ``text_rules_golden.json``: the tokens the pre-issue-18 rules gave on a sample of 20 Newsgroups.

Run once, with the code *before* named rule sets (``git show c97fd2a:ntm_spark/core/text.py``), so
that ``test_text_rules_golden.py`` pins ``v1`` (today's rules for manifests without a name) and
``notebook`` to what that code produced:

    git show c97fd2a:ntm_spark/core/text.py > /tmp/text_head.py
    .venv/bin/python tests/ntm_spark/core/data/make_text_rules_golden.py /tmp/text_head.py

``v1`` is that module's ``TextNormalizer(clean=True)``. ``notebook`` is computed independently of
the project's normalizer: that module's cleaning and tokenizer, NLTK's own ``WordNetLemmatizer``
per token, then the stop words removed from the lemmas (``CountVectorizer(tokenizer=LemmaTokenizer(),
stop_words="english")``). Each document is pinned by the sha256 of its tokens joined by newlines.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from ntm_spark.core.nltk_data import load_wordnet_lemmatizer  # noqa: E402
from ntm_spark.core.text import decode_document_bytes  # noqa: E402
from ntm_spark.spark.corpus import locate_20newsgroups  # noqa: E402

#: Documents with uuencoded, BinHex or base64 blocks, PGP armour, or a hex dump (found by the issue 18 survey).
JUNK_IDS = [
    "train/comp.os.ms-windows.misc/9990", "train/misc.forsale/76078", "train/misc.forsale/75974",
    "test/comp.sys.mac.hardware/52002", "test/comp.sys.ibm.pc.hardware/61008", "train/sci.crypt/15545",
    "train/comp.sys.mac.hardware/51946", "train/comp.windows.x/64830", "train/comp.windows.x/67275",
    "train/alt.atheism/51060", "train/sci.crypt/15445",
]  # fmt: skip


def digest(tokens: list) -> str:
    """Return the sha256 of ``tokens`` joined by newlines (a token never holds a newline)."""
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def main(old_text_module: str) -> int:
    spec = importlib.util.spec_from_file_location("old_text", old_text_module)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    v1 = old.TextNormalizer(clean=True)
    wnl = load_wordnet_lemmatizer(download=False)
    docs = {}
    with tarfile.open(locate_20newsgroups(download=False)) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3:
                split = "train" if "train" in parts[0] else "test"
                docs[f"{split}/{parts[1]}/{parts[2]}"] = decode_document_bytes(tar.extractfile(member).read())[0]
    ids = sorted(docs)
    sample = sorted(set(random.Random(18).sample(ids, 300)) | set(JUNK_IDS))
    out = {}
    for doc_id in sample:
        text = docs[doc_id]
        nb = [wnl.lemmatize(t) for t in old.tokenize(old.strip_newsgroup_noise(text))]
        nb = [t for t in nb if t not in old.ENGLISH_STOP_WORDS]
        v1_tokens = v1.normalize(text)
        out[doc_id] = {
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "v1": {"n": len(v1_tokens), "sha256": digest(v1_tokens)},
            "notebook": {"n": len(nb), "sha256": digest(nb)},
        }
    path = Path(__file__).with_name("text_rules_golden.json")
    path.write_text(json.dumps({"generated_with": "ntm_spark/core/text.py at c97fd2a", "documents": out}, indent=1) + "\n")
    print(f"wrote {len(out)} documents to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
