#!/usr/bin/env bash
# Train the two default models exactly as shipped, then evaluate them on every real set we have.
#
#   ./scripts/train_default_models.sh [options] [-- extra 'histoviewer train cnn' options]
#
#   --out DIR        where the models go (default resources/models: cnn-pcam.safetensors,
#                    handcrafted-pcam.safetensors)
#   --work DIR       phantoms, plots and JSON results (default <data dir>/default-training)
#   --data DIR       the shared real data (default ../shared/data beside the project)
#   --no-phantom     train on kaggle-sample alone (no phantom patches)
#   --only KIND      train and evaluate only cnn, handcrafted, screen or cnn-resnet
#   --with-resnet    also train the GPU model cnn-pcam-resnet.safetensors (ResNet-18-shaped,
#                    100 epochs, patience 20; about 2 minutes on one H200, hours on 2 CPU cores)
#   anything else (e.g. --arch strided-cnn --epochs 30 --device cuda) goes to 'train cnn'.
#
# screen-pcam.safetensors is the 2.5x screening model of 'analyze --strategy screened' and of
# the viewer's idle pass: 'train screen' on the same data downsampled 4x (24 px at 3.888
# um/px), its threshold chosen on the validation part for sensitivity >= 0.99, margin 1 patch;
# about 3 minutes on 2 CPU cores.
#
# Data: kaggle-sample (9,510 real PatchCamelyon patches) is cut into train / valid / test
# (70 / 15 / 15 %, stratified by label, split seed 0); the test part is never read in training.
# Phantom patches (three small seeded phantom slides, one negative) only train: validation,
# calibration and the operating point come from the real patches (--valid-from 1).
# Evaluation: the kaggle test part, the 89 CAMELYON16 40x patches (resampled to 0.972 um/px),
# the 2,155 PCam hard negatives (specificity), and three held-out phantom test slides.
# Fixed seeds everywhere: a rerun on the same machine gives the same numbers.
# New weights for resources/models need their digest and caveat in
# histoviewer/core/models/shipped.py (tests/core/test_model_trust.py prints the digest).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$here/resources/models"
work="${HISTOVIEWER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/histoviewer}/default-training"
data="$here/../shared/data"
phantom=1
only=""
resnet=0
cnn_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --no-phantom) phantom=0; shift ;;
    --only) only="$2"; shift 2 ;;
    --with-resnet) resnet=1; shift ;;
    --) shift; cnn_opts+=("$@"); break ;;
    *) cnn_opts+=("$1"); shift ;;
  esac
done
if [ -n "${HV:-}" ]; then
  read -r -a hv <<< "$HV"       # e.g. HV="python -m histoviewer" in a development checkout
else
  bash "$here/scripts/bootstrap.sh" >/dev/null
  hv=("$here/.venv/bin/histoviewer")
fi
kaggle="$data/patches/kaggle-sample"
mkdir -p "$out" "$work/phantom-train" "$work/phantom-test"

# Small phantoms (seed:size:lesions) at 0.25 um/px: a mix of lesion sizes, one negative node each.
# (a 4 x 4 mm slide holds a node of about 2.5 x 2.2 mm: a 2.05 mm macrometastasis fits for these seeds)
train_slides=("305:16000:macro:2.05,itc:0.1" "302:14000:micro:1.2,micro:0.5,itc:0.15" "303:12000:")
test_slides=("401:16000:macro:2.05,itc:0.1" "402:14000:micro:0.9,itc:0.15" "403:12000:")
make_phantom() {  # folder, "seed:size:lesions"
  local seed="${2%%:*}" rest="${2#*:}"
  local size="${rest%%:*}" lesions="${rest#*:}" file="$1/phantom-${2%%:*}.tiff"
  if [ ! -f "$file" ] || [ ! -f "${file%.tiff}.geojson" ]; then
    "${hv[@]}" phantom "$file" --width "$size" --height "$size" --mpp 0.25 --lesions "$lesions" \
      --seed "$seed" >/dev/null
  fi
}
for s in "${train_slides[@]}"; do make_phantom "$work/phantom-train" "$s"; done
for s in "${test_slides[@]}"; do make_phantom "$work/phantom-test" "$s"; done

sources=(--data "$kaggle")
# Patches cut from slides: PCam labels (tumour in the central 32 px), at most 3 normal per tumour.
if [ "$phantom" = 1 ]; then sources+=(--data "$work/phantom-train" --negative-ratio 3); fi
common=("${sources[@]}" --valid-from 1 --split-seed 0 --seed 0 --json)
kinds=(handcrafted cnn screen)  # the cheap one first
if [ "$resnet" = 1 ]; then kinds+=(cnn-resnet); fi
if [ -n "$only" ]; then kinds=("$only"); fi
file_of() {  # kind -> model file: cnn-pcam, handcrafted-pcam, cnn-pcam-resnet
  case "$1" in cnn-resnet) echo "$out/cnn-pcam-resnet.safetensors" ;; *) echo "$out/$1-pcam.safetensors" ;; esac  # screen: screen-pcam
}
for kind in "${kinds[@]}"; do
  extra=()
  case "$kind" in
    cnn) extra=("${cnn_opts[@]}") ;;
    cnn-resnet) extra=(--arch resnet --epochs 100 --patience 20 "${cnn_opts[@]}") ;;  # e.g. --device cuda
  esac
  "${hv[@]}" train "${kind%-resnet}" "${common[@]}" --name "$(basename "$(file_of "$kind")" .safetensors)" \
    "${extra[@]}" --overwrite --out "$(file_of "$kind")" > "$work/train-$kind.json"
done

# One table: every model on every held-out set, at the model's own operating point; each result
# is also recorded in the model file's header (evaluations), so the model card carries it.
evaluate() {  # kind, set name, eval-patches options...
  local kind="$1" name="$2"; shift 2
  "${hv[@]}" eval-patches --model "$(file_of "$kind")" "$@" --json --record "$name" \
    --roc "$work/roc-$kind-$name.png" --calibration "$work/reliability-$kind-$name.png" \
    > "$work/eval-$kind-$name.json"
}
for kind in "${kinds[@]}"; do
  evaluate "$kind" kaggle-test --data "$kaggle" --part test
  evaluate "$kind" camelyon16 --data "$data/patches/camelyon16-256px-40x" --patch-mpp 0.243
  evaluate "$kind" hard-negatives --data "$data/patches/pcam-96px-negatives" --label 0 --patch-mpp 0.972
  evaluate "$kind" phantom-test --data "$work/phantom-test" --layout slides --negative-ratio 3
done
python3 - "$work" "${kinds[@]}" <<'PY'
import json, sys
work, kinds = sys.argv[1], sys.argv[2:]
def pct(v): return "n/a" if v is None else f"{100 * v:.1f} %"
def num(v): return "n/a" if v is None else f"{v:.3f}"
print(f"\n{'model':<12} {'data':<15} {'n':>5} {'AUC':>6} {'ECE':>6} {'Brier':>6} {'thr':>6} {'sens':>8} {'spec':>8}")
for kind in kinds:
    t = json.load(open(f"{work}/train-{kind}.json"))
    op = t["operating_point"]
    print(f"{t['name']}: {t['n_train']} train / {t['n_valid']} valid / {t['n_test']} test; "
          f"operating point {op['threshold']:.3f} ({op['target']}): valid sens {pct(op['sensitivity'])}, "
          f"spec {pct(op['specificity'])}; valid ECE {num(t['valid_ece'])}; caveat: {t['caveat']}")
    for name in ("kaggle-test", "camelyon16", "hard-negatives", "phantom-test"):
        r = json.load(open(f"{work}/eval-{kind}-{name}.json"))
        m = r["metrics"]
        print(f"{kind:<12} {name:<15} {m['n']:>5} {num(r['auc']):>6} {num(r['ece']):>6} {num(r['brier']):>6} "
              f"{r['threshold']:>6.3f} {pct(r['sensitivity']):>8} {pct(r['specificity']):>8}")
PY
