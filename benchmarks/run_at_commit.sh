#!/usr/bin/env bash
# Run one benchmark against the server code of a commit, not the working tree.
#
#   benchmarks/run_at_commit.sh HEAD server_cpu.py --json benchmarks/results/x.json
#
# Exports jarvis/ and jarvis_cli/ (cli/ before the rename, exported as jarvis_cli/) of COMMIT into a temporary
# directory with a COMMIT file, and puts it first on PYTHONPATH, so edits in
# progress in the checkout cannot leak into the figures. The benchmark
# scripts themselves come from the checkout. The commit's C speedups (*.c
# beside the modules) are compiled into the export, as `pip install` would
# build them. The export is removed on exit.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 COMMIT BENCHMARK.py [ARGS...]" >&2
    exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commit="$(git -C "$repo" rev-parse --short "$1")"
bench="$repo/benchmarks/${2%.py}.py"
shift 2
[[ -f "$bench" ]] || { echo "no such benchmark: $bench" >&2; exit 2; }

export_dir="$(mktemp -d "${TMPDIR:-/tmp}/jarvis-at-$commit.XXXXXX")"
trap 'rm -rf "$export_dir"' EXIT
if git -C "$repo" cat-file -e "$commit:jarvis_cli" 2>/dev/null; then
    git -C "$repo" archive "$commit" jarvis jarvis_cli | tar -x -C "$export_dir"
else  # a commit from before the folder took its import name
    git -C "$repo" archive "$commit" jarvis cli | tar -x -C "$export_dir"
    mv "$export_dir/cli" "$export_dir/jarvis_cli"
fi
echo "$commit" > "$export_dir/COMMIT"
(cd "$export_dir" && "$repo/.venv/bin/python" - <<'PY'
import pathlib
from setuptools import Extension, setup

sources = sorted(str(p) for p in pathlib.Path().glob("jarvis*/**/*.c"))
modules = [Extension(s[:-2].replace("/", "."), [s]) for s in sources]
if modules:
    setup(name="export", script_args=["-q", "build_ext", "--inplace"], ext_modules=modules)
    print("built:", ", ".join(m.name for m in modules))
PY
)

status=0
PYTHONPATH="$export_dir${PYTHONPATH:+:$PYTHONPATH}" "$repo/.venv/bin/python" "$bench" "$@" || status=$?
exit "$status"
