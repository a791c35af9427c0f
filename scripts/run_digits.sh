#!/usr/bin/env bash
# The whole pipeline on the offline default dataset (scikit-learn's digits), from a fresh clone:
# set-up, pretext + mining, SCAN, self-labeling, eval of each step, then a table of the results.
# Extra arguments are passed to every script as --opts (e.g. seed=1 device=cpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
ENV=configs/env.yml
declare -A seconds
run_step() {  # name, script, config
  local started=$SECONDS
  .venv/bin/python "$2" --config_env $ENV --config_exp "$3" --opts "${OPTS[@]}"
  .venv/bin/python eval.py --config_env $ENV --config_exp "$3" --opts "${OPTS[@]}"
  seconds[$1]=$((SECONDS - started))
}
OPTS=("$@")
run_step pretext simclr.py configs/pretext/simclr_digits.yml
run_step scan scan.py configs/scan/scan_digits.yml
run_step selflabel selflabel.py configs/selflabel/selflabel_digits.yml
.venv/bin/python -m utils.report --config_env $ENV --opts "${OPTS[@]}" \
  --configs configs/pretext/simclr_digits.yml configs/scan/scan_digits.yml \
            configs/selflabel/selflabel_digits.yml \
  --seconds "${seconds[pretext]}" "${seconds[scan]}" "${seconds[selflabel]}"
