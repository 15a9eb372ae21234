#!/usr/bin/env bash
# Check the lower bounds of pyproject.toml: install the package at the LOWEST versions its
# bounds allow, then run the unit tests and a few chapters (nbval lax mode: every cell must
# run and its asserts hold; outputs are not compared) against them.
#
#     scripts/check_lowest_versions.sh            # from the repository root (make lowest)
#
# Environment:
#     LOWEST_VENV    the throwaway venv, rebuilt from scratch each run [.venv-lowest]
#     PYTHON         the interpreter the venv is made from [python3]
#     TORCH_VERSION  the torch installed, and held, in the venv [2.13.0]
#     TORCH_INDEX    an index serving torch's CPU wheels, for a machine whose pip does not
#                    already serve one, e.g. https://download.pytorch.org/whl/cpu [none]
#     LOWEST_CONSTRAINTS  extra constraints, one per line, e.g. "numpy>=2" for the lowest
#                    versions beside numpy 2 (what Colab and Python 3.13 have) [none]
#
# torch is the one dependency not taken at its floor: every torch below the one the book
# pins is a multi-GB CUDA download from PyPI, so the venv gets the CPU wheel of
# TORCH_VERSION first, with pip (as the Makefile does), and uv is told to keep it. Its
# floor in pyproject.toml comes from the release notes of the APIs the code uses.
set -euo pipefail

VENV="${LOWEST_VENV:-.venv-lowest}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_INDEX="${TORCH_INDEX:-}"
LOWEST_CONSTRAINTS="${LOWEST_CONSTRAINTS:-}"
# Chapters that together use most of the package, about 2 minutes on a 2-core CPU:
# 06 the networks and the Atari preprocessing, 07 replay, targets, exploration and the
# training loop on CartPole, 09 both Atari pipelines (gymnasium wrappers, ale-py's vector
# env, OpenCV), 10 the shipped agent (safetensors), Pong training and evaluation.
CHAPTERS=(
    book/06_assembling_duel_dqn.ipynb
    book/07_learning_loop.ipynb
    book/09_atari.ipynb
    book/10_pong.ipynb
)
# The project's direct dependencies, whose installed versions the log shows.
DIRECT='torch|numpy|gymnasium|ale-py|opencv-python-headless|safetensors|tqdm|matplotlib|scipy'
DIRECT+='|pytest|hypothesis|nbval|ruff'

if [[ ! -f pyproject.toml || ! -d duel_tutorial ]]; then
    echo "run this from the repository root: scripts/check_lowest_versions.sh" >&2
    exit 2
fi
start=$SECONDS
PY="$VENV/bin/python"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT

echo "=== a fresh venv at $VENV"
if [[ -e "$VENV" && ! -f "$VENV/pyvenv.cfg" ]]; then  # never rm -rf what is not a venv
    echo "$VENV exists and is not a venv; set LOWEST_VENV to another path" >&2
    exit 2
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$PY" --version

echo "=== torch==$TORCH_VERSION (CPU wheel), with pip, before anything else"
"$PY" -m pip install --quiet ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==$TORCH_VERSION"

echo "=== uv, with pip"
"$PY" -m pip install --quiet uv
"$VENV/bin/uv" --version

# --resolution lowest-direct: every direct dependency of the package (and of its test
# extra) at the lowest version its bound allows; their own dependencies at the highest
# compatible version, as a user's resolver would pick them. The constraint holds torch
# at the installed CPU build: uv reuses an installed distribution that satisfies the
# resolution (its metadata too), so it downloads neither a CUDA torch nor nvidia-*
# packages. uv reads PyPI only: pip's configuration (local wheel folders) is not used.
printf '%s\n' "torch==$TORCH_VERSION" "$LOWEST_CONSTRAINTS" >"$constraints"
echo "=== the package and its test extra at the lowest versions pyproject.toml allows"
"$VENV/bin/uv" pip install --python "$PY" --resolution lowest-direct \
    --constraints "$constraints" -e ".[test]"

# uv must have kept the CPU build: no CUDA torch, no nvidia-* wheels.
"$PY" - "$TORCH_VERSION" <<'EOF'
import sys
from importlib import metadata

import torch

want = sys.argv[1]
if torch.__version__.split("+")[0] != want or torch.version.cuda is not None:
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) is installed; expected the "
             f"CPU build of {want}")
nvidia = sorted(d.metadata["Name"] for d in metadata.distributions()
                if d.metadata["Name"].lower().startswith("nvidia"))
if nvidia:
    sys.exit(f"CUDA wheels were installed: {', '.join(nvidia)}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}: the CPU build, kept")
EOF

echo "=== installed versions of the direct dependencies (floors, but torch: held)"
"$VENV/bin/uv" pip list --python "$PY" 2>/dev/null | grep -i -E "^($DIRECT) " \
    | sort -f

echo "=== ruff at its floor: the Makefile's lint check"
"$VENV/bin/ruff" check --no-cache duel_tutorial tests benchmarks experiments scripts

echo "=== unit tests"
"$PY" -m pytest tests -q -x

echo "=== chapters, nbval lax mode: ${CHAPTERS[*]}"
"$PY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout 600 -q "${CHAPTERS[@]}"

echo "=== the lowest versions pass ($((SECONDS - start)) s)"
