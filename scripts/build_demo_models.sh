#!/usr/bin/env bash
# Rebuild the two default models in resources/models/ exactly as shipped: the same phantom
# slides (fixed seeds), the same training seeds. They are DEMONSTRATION models trained on
# synthetic tissue: not for diagnosis. To train a real model, see README ("Train a real model").
#
#   ./scripts/build_demo_models.sh [WORK_DIR]      # ~15 minutes on 2 CPU cores
#
# WORK_DIR (default: <data dir>/demo-training) keeps the phantoms, so a rerun skips them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh" >/dev/null
hv="$here/.venv/bin/histoviewer"
work="${1:-${HISTOVIEWER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/histoviewer}/demo-training}"
mkdir -p "$work/train" "$work/test"

# seed:lesions. 28000 x 28000 px at 0.25 um/px = 7 x 7 mm; one node per slide. One negative
# node in each set so the models see nodes without any tumour.
train_slides=(
  "101:macro:2.4,micro:0.9,itc:0.15"
  "102:macro:2.2,micro:0.6,micro:0.4"
  "103:micro:1.6,micro:0.9,itc:0.18"
  "104:macro:2.6"
  "105:"
  "106:macro:2.1,micro:1.2,micro:0.3"
)
test_slides=(
  "201:macro:2.3,micro:0.7,itc:0.1"
  "202:micro:1.4,micro:0.5"
  "203:"
)
make_phantom() {  # folder, "seed:lesions"
  local seed="${2%%:*}" lesions="${2#*:}" out="$1/phantom-${2%%:*}.tiff"
  if [ ! -f "$out" ] || [ ! -f "${out%.tiff}.geojson" ]; then
    "$hv" phantom "$out" --width 28000 --height 28000 --mpp 0.25 --lesions "$lesions" --seed "$seed"
  fi
}
for s in "${train_slides[@]}"; do make_phantom "$work/train" "$s"; done
for s in "${test_slides[@]}"; do make_phantom "$work/test" "$s"; done

# Patches at PatchCamelyon scale (96 px at 0.972 um/px) cut from the slides, PCam labels
# (tumour in the central 32 x 32 px); at most 3 normal patches per tumour patch.
common=(--data "$work/train" --layout slides --negative-ratio 3 --seed 0 --device cpu --demonstration)
"$hv" train cnn "${common[@]}" --name demo-cnn --epochs 20 --patience 5 \
  --out "$here/resources/models/demo-cnn.safetensors"
"$hv" train handcrafted "${common[@]}" --name demo-handcrafted \
  --out "$here/resources/models/demo-handcrafted.safetensors"

# Held-out phantom test set (other seeds, other slides).
for m in cnn handcrafted; do
  "$hv" eval-patches --model "$m" --data "$work/test" --layout slides --negative-ratio 3 \
    --roc "$work/roc-phantom-test-$m.png"
done
