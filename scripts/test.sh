#!/usr/bin/env bash
# The test command of the README and of CI: installs the pinned set (a no-op when present),
# then runs the whole suite offline.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q -c constraints.txt -e ".[dev]" || { echo "install failed" >&2; exit 2; }
python3 -m pytest -q "$@"
rc=$?
# pytest's 5 means it collected no test: that is a failure of the suite, not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
