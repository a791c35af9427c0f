#!/usr/bin/env bash
# A folder of images, clustered with one command: the three steps, then the annotation export
# (gallery, CSV, grids); ends with the gallery's path, the cluster sizes and any warning.
#   bash scripts/run_folder.sh FOLDER NUM_CLASSES [--pretrained WEIGHTS] [--opts KEY=VALUE ...]
# --pretrained: a DINOv2 ViT-S/14 weights file (or 'hub' to download it), the frozen-backbone
# path; without it everything is trained from scratch. --opts go to every step that has the key
# (e.g. epochs=5, num_neighbors=5 for steps 1 and 2). Outputs: <root_dir>/folder-<name>-<hash>
# [-<backbone>]/{pretext,scan,selflabel,annotations}/ (root_dir in configs/env.yml).
set -euo pipefail
usage="usage: bash scripts/run_folder.sh FOLDER NUM_CLASSES [--pretrained WEIGHTS] [--opts KEY=VALUE ...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
absolute() { case $1 in /*|hub) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
FOLDER=$(absolute "$1"); CLASSES=$2; shift 2
WEIGHTS=""; EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --pretrained) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; WEIGHTS=$(absolute "$2"); shift 2 ;;
    --opts) shift; EXTRA=("$@"); break ;;
    *) echo "unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done
if [ -n "${SCAN_PYTHON:-}" ]; then  # tests: an interpreter that is already set up
  cd "$(dirname "${BASH_SOURCE[0]}")/.."; PY=$SCAN_PYTHON
else
  source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"; PY=.venv/bin/python
fi
ENV=configs/env.yml
SUFFIX=${WEIGHTS:+_pretrained}
OPTS=("folder=$FOLDER" "num_classes=$CLASSES" "${EXTRA[@]}")
"$PY" -m utils.step_opts simclr "${OPTS[@]}" > /dev/null  # a key no step has stops here
step_opts() { mapfile -d '' STEP_OPTS < <("$PY" -m utils.step_opts "$1" "${OPTS[@]}"); }

step_opts simclr
[ -z "$WEIGHTS" ] || STEP_OPTS+=("pretrained_weights=$WEIGHTS")
"$PY" simclr.py --config_env $ENV --config_exp "configs/pretext/simclr_folder$SUFFIX.yml" --opts "${STEP_OPTS[@]}"
step_opts scan
"$PY" scan.py --config_env $ENV --config_exp "configs/scan/scan_folder$SUFFIX.yml" --opts "${STEP_OPTS[@]}"
step_opts selflabel
SELFLABEL=configs/selflabel/selflabel_folder$SUFFIX.yml
"$PY" selflabel.py --config_env $ENV --config_exp "$SELFLABEL" --opts "${STEP_OPTS[@]}"
OUT=$("$PY" -m annotation.folder_report where --config_env $ENV --config_exp "$SELFLABEL" --opts "${STEP_OPTS[@]}")
"$PY" eval.py --config_env $ENV --config_exp "$SELFLABEL" --annotate "$OUT" --opts "${STEP_OPTS[@]}"
