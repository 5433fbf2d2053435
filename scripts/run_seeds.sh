#!/bin/bash
# Train and choose a translator recipe once per seed, into results/<recipe>/seeds/seed<N>/; then summarise.
#
#   bash scripts/run_seeds.sh multi30k_2h 0 1 2          # one seed after another (2 CPU cores: about 2.1 h a seed)
#   PARALLEL=1 DEVICE=cuda THREADS=4 bash scripts/run_seeds.sh multi30k_2h 0 1 2 3
#                                                        # all seeds at once on one GPU (each process is mostly
#                                                        # CPU-bound; on an H200 with 16 cores, 4 seeds took 6 min)
#   python scripts/seeds.py multi30k_2h                  # then: seeds.json, mean ± std and paired intervals
#
# Each seed runs the recipe's own steps (--steps is the recipe's; --seed N changes the data order, the
# initial weights and dropout), then scripts/choose.py chooses the averaging, beam and length penalty on
# validation and decodes the test set once. Checkpoints go to checkpoints/<recipe>.seed<N>.pt (git-ignored).
set -euo pipefail
recipe=${1:?usage: run_seeds.sh RECIPE SEED...}; shift
[ $# -gt 0 ] || { echo "name at least one seed: run_seeds.sh $recipe 0 1 2" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
one_seed() {
  local s=$1 d="$root/results/$recipe/seeds/seed$1" ck="$root/checkpoints/$recipe.seed$1.pt"
  mkdir -p "$d"
  python "$root/scripts/train_translator.py" "$recipe" --seed "$s" ${DEVICE:+--device $DEVICE} \
    ${THREADS:+--threads $THREADS} --no-progress --out "$d" --checkpoint "$ck" > "$d/train.log" 2>&1
  python "$root/scripts/choose.py" "$recipe" --checkpoint "$ck" --out "$d" --save "$root/checkpoints/$recipe.seed$s.best.pt" \
    ${THREADS:+--threads $THREADS} > "$d/choose.log" 2>&1
  tail -n 2 "$d/choose.log"
}
for s in "$@"; do
  if [ -n "${PARALLEL:-}" ]; then one_seed "$s" & else one_seed "$s"; fi
done
wait
