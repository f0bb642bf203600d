#!/usr/bin/env bash
# Rebuild workbench/ui/viewer.bundle.js: 3Dmol.js + workbench/ui/viewer.js compiled into one ES
# module with `panel compile` (npm + esbuild), so the served dashboard loads nothing from a CDN.
#
# Needs node/npm and the npm registry only.  The exact package versions are installed into a
# throw-away build directory (nothing is added to the repository or installed globally); then
# `panel compile --skip-npm` generates the entry point and runs esbuild there.  (Without
# --skip-npm panel would `npm install` a caret range derived from the component's _importmap.)
#
# Usage: scripts/build_viewer_bundle.sh   (from anywhere; uses .venv/bin/python, or $PYTHON, with panel)
set -euo pipefail

THREEDMOL_VERSION=2.5.5   # keep in sync with THREEDMOL_VERSION in workbench/ui/viewer.py
ESBUILD_VERSION=0.28.2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
grep -q "THREEDMOL_VERSION = \"$THREEDMOL_VERSION\"" "$ROOT/workbench/ui/viewer.py" \
  || { echo "THREEDMOL_VERSION differs between this script and workbench/ui/viewer.py" >&2; exit 1; }

BUILD="$(mktemp -d "${TMPDIR:-/tmp}/viewer-bundle.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT

# --ignore-scripts: esbuild's binary comes from its optional @esbuild/<platform> package, no
# postinstall needed; 3Dmol's build already contains its own dependencies.
(cd "$BUILD" && npm install --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
  "3dmol@$THREEDMOL_VERSION" "esbuild@$ESBUILD_VERSION")

BUNDLE="$ROOT/workbench/ui/viewer.bundle.js"
# panel resolves StructureViewer._bundle while generating the project and refuses a missing file:
# on a first build put an empty placeholder there (removed again if the build fails).
if [ ! -s "$BUNDLE" ]; then
  : > "$BUNDLE"
  trap 'rm -rf "$BUILD"; [ -s "$BUNDLE" ] || rm -f "$BUNDLE"' EXIT
fi

cd "$ROOT"
# This is `panel compile workbench.ui.viewer:StructureViewer --build-dir "$BUILD" --skip-npm`,
# called through panel's Python API because the CLI of panel 1.9.4 exits with status 1 even on
# success (compile_components returns 0 for a written file, which run_compile counts as an error).
PATH="$BUILD/node_modules/.bin:$PATH" "$PYTHON" - "$BUILD" <<'PY'
import sys

from panel.io.compile import compile_components, find_module_bundles

build_dir = sys.argv[1]
for bundle, components in find_module_bundles("workbench.ui.viewer:StructureViewer").items():
    print(f"building {bundle} from {[c.__name__ for c in components]}")
    if compile_components(components, build_dir=build_dir, outfile=bundle, skip_npm=True, minify=True) != 0:
        sys.exit(f"panel compile failed for {bundle}")
PY

grep -q "3dmol v$THREEDMOL_VERSION" "$BUNDLE" || { echo "bundle lacks the 3dmol v$THREEDMOL_VERSION banner" >&2; exit 1; }
echo "wrote $BUNDLE ($(wc -c < "$BUNDLE") bytes, 3dmol $THREEDMOL_VERSION, esbuild $ESBUILD_VERSION)"
