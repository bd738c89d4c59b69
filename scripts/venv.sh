# Sourced by the scripts (never run): where the project's virtual environment lives. This is
# the one place that says so: `.venv` in the checkout, made by scripts/setup, holding
# mummi-spec (editable) and its test tools. Use it with `. .venv/bin/activate`, or call
# `.venv/bin/mummi` / `.venv/bin/python` directly.
VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv"
VENV_PYTHON="$VENV/bin/python"
