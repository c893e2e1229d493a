#!/usr/bin/env bash
# The main job: profile a third-party library (Python-Markdown) without editing it.
# Builds callweave for the first CPython among 3.11-3.13 found, installs the example's
# requirements into the same environment, and runs the example app under `callweave run`.
source "$(dirname "$0")/pythons.sh"
cd "$ROOT"
read -r v py <<< "$(find_pythons | head -n 1)"
if [ -z "${py:-}" ]; then
  echo "no CPython 3.11, 3.12 or 3.13 found" >&2
  exit 1
fi
vpy="$(setup_venv "$v" "$py")"
"$vpy" -m pip install --quiet --disable-pip-version-check -r examples/markdown_report/requirements.txt >&2
cd examples/markdown_report
exec "$vpy" -m callweave run app.py
