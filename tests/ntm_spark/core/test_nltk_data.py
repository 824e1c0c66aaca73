import pytest

from ntm_spark.core import nltk_data
from ntm_spark.core.nltk_data import LEXNAMES, NltkDataError, find_wordnet, install_wordnet

needs_debian_wordnet = pytest.mark.skipif(
    not (nltk_data.DEBIAN_WORDNET_DIR / "index.sense").exists(),
    reason="Debian's wordnet-base and wordnet-sense-index are not installed (run `make nltk-data`)",
)


@needs_debian_wordnet
def test_install_copies_files_and_writes_lexnames(tmp_path):
    root = install_wordnet(dest_root=tmp_path)
    wn = root / "corpora" / "wordnet"
    assert (wn / "index.noun").is_file() and not (wn / "index.noun").is_symlink()
    lines = (wn / "lexnames").read_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


@needs_debian_wordnet
def test_lemmatizer_loads_from_installed_copy(tmp_path, monkeypatch):
    root = install_wordnet(dest_root=tmp_path)
    monkeypatch.setenv("NLTK_DATA", str(root))
    assert find_wordnet() == root
    lem = nltk_data.load_wordnet_lemmatizer()
    assert lem.lemmatize("parliaments") == "parliament"
    assert lem.lemmatize("cars") == "car"


@needs_debian_wordnet
def test_noun_lemmatizer_cache_is_written_then_used(tmp_path, monkeypatch):
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from ntm_spark.core.text import NOUN_MORPHY_CACHE, load_noun_lemmatizer

    root = install_wordnet(dest_root=tmp_path)
    monkeypatch.setenv("NLTK_DATA", str(root))
    words = ["parliaments", "cars", "geese", "mice", "children", "analyses", "buses", "wives", "ties", "feet", "matrices", "xyzzies"]
    reference = nltk_data.load_wordnet_lemmatizer()
    first = load_noun_lemmatizer()  # builds NLTK's reader and writes the cache
    assert (root / "corpora" / NOUN_MORPHY_CACHE).is_file()

    def no_reader(*args, **kwargs):
        raise AssertionError("WordNet was parsed again instead of reading the cache")

    monkeypatch.setattr(WordNetCorpusReader, "__init__", no_reader)
    second = load_noun_lemmatizer()
    assert [second(w) for w in words] == [first(w) for w in words] == [reference.lemmatize(w) for w in words]


def test_missing_debian_files_name_the_package(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(NltkDataError, match="apt-get install wordnet-base"):
        install_wordnet(src=tmp_path / "src", dest_root=tmp_path / "dest")


def test_nothing_found_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("ntm_spark.core.paths.INSTALL_DIR", tmp_path / "repo" / ".ntm")  # no `make nltk-data` copy either
    with pytest.raises(NltkDataError, match=r"`make -C \S+ nltk-data`"):
        find_wordnet(download=False)
    assert nltk_data.nltk_data_env() == {}


def test_fresh_ntm_home_finds_the_make_installed_wordnet(tmp_path, monkeypatch):
    installed = tmp_path / "repo" / ".ntm"
    (installed / "nltk_data" / "corpora" / "wordnet").mkdir(parents=True)
    (installed / "nltk_data" / "corpora" / "wordnet" / "index.noun").write_text("")
    monkeypatch.setattr("ntm_spark.core.paths.INSTALL_DIR", installed)
    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    assert find_wordnet() == installed / "nltk_data"
    # A copy of its own wins, and `ntm data wordnet` installs into the state folder by default.
    own = tmp_path / "home" / "nltk_data"
    (own / "corpora" / "wordnet").mkdir(parents=True)
    (own / "corpora" / "wordnet" / "index.noun").write_text("")
    assert find_wordnet() == own


def test_nltk_data_env_comes_first(tmp_path, monkeypatch):
    fake = tmp_path / "mine"
    (fake / "corpora" / "wordnet").mkdir(parents=True)
    (fake / "corpora" / "wordnet" / "index.noun").write_text("")
    monkeypatch.setenv("NLTK_DATA", str(fake))
    assert find_wordnet() == fake
    assert nltk_data.nltk_data_env()["NLTK_DATA"].split(":")[0] == str(fake)


@needs_debian_wordnet
def test_archive_for_cluster(tmp_path, monkeypatch):
    import tarfile

    root = install_wordnet(dest_root=tmp_path / "data")
    monkeypatch.setenv("NLTK_DATA", str(root))
    out = nltk_data.make_archive(tmp_path / "nltk_data.tar.gz")
    with tarfile.open(out) as tar:
        assert "corpora/wordnet/lexnames" in tar.getnames()


def test_import_nltk_skips_scipy_and_sklearn_only_while_nltk_imports():
    """A fresh process: nltk imports without SciPy/scikit-learn, which still import afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ntm_spark.core.nltk_data import import_nltk\n"
        "nltk = import_nltk()\n"
        "print(sorted(m for m in ('scipy', 'sklearn') if m in sys.modules))\n"
        "from ntm_spark.core.text import load_noun_lemmatizer\n"
        "lemma = load_noun_lemmatizer()\n"
        "print(lemma('parliaments'), lemma('cars'), lemma('geese'))\n"
        "import scipy.stats, sklearn.feature_extraction\n"
        "print('later', scipy.stats.norm.cdf(0.0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"  # nltk's import pulled in neither
    assert out[1] == "parliament car goose"
    assert out[2] == "later 0.5"
