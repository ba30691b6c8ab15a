#!/usr/bin/env bash
# Are the dependency floors in pyproject.toml true? Install every direct dependency at the
# lowest version it allows (uv's --resolution lowest-direct; what they pull in resolves
# as usual) in a fresh virtual environment, show what was installed, and run the fast
# tests there (no slow, weights, shared, gpu or browser tests).
#
#   scripts/check_min_deps.sh [VENV_DIR]       (default: a new temporary folder)
#
# TORCH_INDEX=URL adds an extra index for torch and torchvision, e.g.
# https://download.pytorch.org/whl/cpu for CPU-only wheels (PyPI's pull in CUDA, ~3 GB).
# Exit status: pytest's (or the install's, when the floors cannot even be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-$(mktemp -d -t postergenre-min-deps.XXXXXX)/venv}"
python="${PYTHON:-python3}"

echo "== fresh venv at $venv ($("$python" --version))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check uv

echo "== install the declared minimum versions (.[test], lowest-direct)"
extra=()
if [[ -n "${TORCH_INDEX:-}" ]]; then
    extra=(--extra-index-url "$TORCH_INDEX" --index-strategy unsafe-best-match)
fi
"$venv/bin/python" -m uv pip install --python "$venv/bin/python" --resolution lowest-direct \
    "${extra[@]}" -e ".[test]"

echo "== direct dependencies as installed (each should be its floor)"
"$venv/bin/python" - <<'EOF'
import re
import tomllib
from importlib import metadata

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = project["dependencies"] + project["optional-dependencies"]["test"]
above = []
for req in wanted:
    name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[.*\])?>=([^,;]+)", req.strip()).groups()
    have = metadata.version(name)
    mark = "" if have == floor or have.startswith(floor + ".") else "   <- above the floor"
    above += [name] if mark else []
    print(f"  {name:26} floor {floor:10} installed {have}{mark}")
if above:
    print(f"  note: not at the floor (no wheel of it for this Python/platform?): {above}")
EOF

echo "== fast tests"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    -m "not slow and not weights and not shared and not gpu and not browser"
