#!/usr/bin/env bash
# Create .venv-label: MONAI Label 0.8.5 in its own environment, layered over the main .venv.
#
# Why a separate environment: monailabel 0.8.5 needs numpy < 2 (numpymaxflow, pydicom-seg) and jsonschema < 4
# (pydicom-seg); the main environment runs numpy 2 and jsonschema 4 (the bundle verifier validates the draft 2019-09
# metadata schema, which jsonschema 3 only reads as draft 7). Installing monailabel into .venv would silently
# downgrade both.
#
# Why layered: .venv already holds torch and MONAI 1.6.1 (several GB). A `.pth` file appends .venv's site-packages
# to .venv-label's sys.path, so torch/MONAI are reused, while every package pip installs here (numpy 1.26,
# jsonschema 3.2, monailabel and the rest of its pins) shadows the .venv copy. A plain `.pth` path line does not
# run .venv's own `.pth` files, so the editable install of this repository's `bundlezoo` package is NOT visible here:
# MONAI Label sees the bundle exactly as a user would, with its vendored `bundlezoo/` only.
#
# Usage: tools/monailabel_env.sh            (idempotent; rebuilds only when this script changes)
#        MAIN_VENV=.venv LABEL_VENV=.venv-label tools/monailabel_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MAIN_VENV=${MAIN_VENV:-.venv}
LABEL_VENV=${LABEL_VENV:-.venv-label}
MONAILABEL_VERSION=0.8.5
STAMP="$LABEL_VENV/.installed"
# Rebuilt when this script or the main environment's requirements change (the overlay reuses .venv's packages).
SCRIPT_HASH=$(cat "$0" pyproject.toml | sha256sum | cut -c1-16)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SCRIPT_HASH" ]]; then
    exit 0
fi
if [[ ! -x "$MAIN_VENV/bin/python" ]]; then
    echo "monailabel_env.sh: $MAIN_VENV/bin/python not found; create the main environment first (make test does)" >&2
    exit 1
fi

start=$(date +%s)
rm -rf "$LABEL_VENV"
# venv from a venv interpreter uses the same base interpreter (sys._base_executable).
"$MAIN_VENV/bin/python" -m venv "$LABEL_VENV"
main_site=$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
label_site=$("$LABEL_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
main_site=$(cd "$main_site" && pwd -P)
echo "$main_site" > "$label_site/zz_main_venv.pth"

# sam2 (a monailabel requirement on Python >= 3.10, used only by its SAM2 apps) ships as an sdist whose isolated
# build would download a second torch; build it against the torch already present, without CUDA kernels.
export SAM2_BUILD_CUDA=0
"$LABEL_VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=70.1" wheel
# pydicom < 3: pydicom-seg 0.4.1 (imported by MONAI Label's datastore at start-up) uses pydicom._storage_sopclass_uids,
# removed in pydicom 3, but declares no upper bound.
"$LABEL_VENV/bin/python" -m pip install --no-build-isolation \
    "monailabel==$MONAILABEL_VERSION" "pydicom>=2.4.4,<3" \
    "monai==$("$MAIN_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("monai"))')"

# Prove the layering holds: MONAI Label imports, numpy is the pinned 1.x, and this repository's bundlezoo is absent
# (checked from / : the current folder is importable, and here it is the checkout).
label_python=$(cd "$LABEL_VENV" && pwd)/bin/python
(cd / && "$label_python" - <<'EOF'
import importlib.util, numpy, monai, monailabel
assert numpy.__version__.startswith("1."), numpy.__version__
assert importlib.util.find_spec("bundlezoo") is None, "the repository's bundlezoo package leaked into .venv-label"
print(f"monailabel {monailabel.__version__}, monai {monai.__version__}, numpy {numpy.__version__}")
EOF
)
echo "$SCRIPT_HASH" > "$STAMP"
echo "monailabel_env.sh: $LABEL_VENV ready in $(( $(date +%s) - start )) s"
