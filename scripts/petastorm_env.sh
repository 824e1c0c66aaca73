#!/usr/bin/env bash
# Build .venv-petastorm: the environment in which `reader: petastorm` and the Spark converter train.
#
# Petastorm 0.13.1 needs pyarrow<=14 and numpy<2; the main environment has pyarrow 25 and
# numpy 2 (pyspark>=4.1 requires pyarrow>=18). This environment holds Petastorm with torch,
# Lightning and pyspark 3.5 pinned beside it (conf/petastorm-requirements.txt says why), and
# runs the project from the source tree (PYTHONPATH=<repo>, or the editable install below).
# Usage:
#     scripts/petastorm_env.sh [VENV_DIR]      # default: <repo>/.venv-petastorm
# Env: PYTHON (interpreter to build from, default python3; 3.9-3.11 have wheels for pyarrow 14).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-petastorm}"
PY="${PYTHON:-python3}"
start=$(date +%s)
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$ROOT/conf/petastorm-requirements.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps "petastorm==0.13.1"
# the project itself, from this checkout, without its (main-environment) dependencies
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" - <<'PY'
import numpy, petastorm, pyarrow, pyspark, pytorch_lightning, torch
print("petastorm", petastorm.__version__, "pyarrow", pyarrow.__version__, "numpy", numpy.__version__,
      "torch", torch.__version__, "lightning", pytorch_lightning.__version__, "pyspark", pyspark.__version__)
PY
echo "built $VENV in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
