#!/usr/bin/env bash
# Build .venv-petastorm: the separate environment for the Petastorm reader backend.
#
# Petastorm 0.13.1 needs pyarrow<=14 and numpy<2; the main environment has pyarrow 25
# and numpy 2 (pyspark>=4.1 requires pyarrow>=18). The backend module
# lightning_module/petastorm_backend.py runs in this environment and needs neither torch
# nor Spark. Usage:
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
"$VENV/bin/python" -c "import petastorm, pyarrow, numpy; print('petastorm', petastorm.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)"
echo "built $VENV in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
