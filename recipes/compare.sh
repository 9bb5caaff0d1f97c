# Shared driver for recipes/<corpus>/compare.sh: one run of the recipe's run.sh per entry of
# `runs` ("name:key=value key=value ..."), each with CONFIG=$COMPARE_CONFIG and its --set
# overrides, landing in exp/cmp_<name>/ with its own log. The recipe sets DEFAULT_DATA,
# COMPARE_CONFIG and `runs`, then sources this file.
#   compare.sh [--data DIR] [--jobs 2] [--only NAME,NAME] [--stop-stage N] [table]
# --jobs queues run side by side, one thread each (two on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")"
data="$DEFAULT_DATA"; jobs=2; table_only=0; only=""; stop_stage=5
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    table) table_only=1; shift ;;
    *) echo "usage: $0 [--data DIR] [--jobs N] [--only NAME,NAME] [--stop-stage N] [table]" >&2
       exit 2 ;;
  esac
done

one() {  # name overrides...
  local name=$1; shift
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  OMP_NUM_THREADS=1 CONFIG=$COMPARE_CONFIG ./run.sh --data "$data" --name "cmp_$name" \
    --stage 0 --stop-stage "$stop_stage" "${sets[@]}" > /dev/null 2>&1 \
    || echo "cmp_$name failed: see exp/cmp_$name/run.log"
}

if [ "$table_only" = 0 ]; then
  CONFIG=$COMPARE_CONFIG ./run.sh --data "$data" --name cmp_prepare --stop-stage 2  # data, LM
  selected=()
  for run in "${runs[@]}"; do
    [ -z "$only" ] || [[ "$only" == *",${run%%:*},"* ]] && selected+=("$run")
  done
  for queue in $(seq 0 $((jobs - 1))); do
    (
      for i in "${!selected[@]}"; do
        [ $((i % jobs)) = "$queue" ] || continue
        name=${selected[$i]%%:*}; read -ra kvs <<< "${selected[$i]#*:}"
        one "$name" "${kvs[@]}"
      done
    ) &
  done
  wait
fi

python3 - <<'PY'
import json, pathlib, re
print("| run | parameters | best epoch | train time | dev WER greedy | dev CER, last epoch "
      "| test WER greedy (95% CI) | test CER greedy | test WER + LM | LM alpha/beta |")
print("|---|---|---|---|---|---|---|---|---|---|")
for exp in sorted(pathlib.Path("exp").glob("cmp_*")):
    try:
        config = json.loads((exp / "best/config.json").read_text())
        greedy = json.loads((exp / "test_greedy/summary.json").read_text())
        lm = json.loads((exp / "test_lm/summary.json").read_text())
        last = (exp / "valid.csv").read_text().splitlines()[-1].split(",")
    except (OSError, ValueError):
        continue
    took = re.findall(r"training took (\d+) s", (exp / "run.log").read_text())
    metrics = config["metrics"]
    # The best-WER epoch of a model that has barely learned can be one that outputs almost
    # nothing; the last epoch's dev CER shows how far it got.
    last_epoch = f"{100 * float(last[1]):.1f}% (epoch {last[3]})"
    weights = exp / "lm_weights.json"  # present when the recipe tunes them on dev
    tuned = json.loads(weights.read_text()) if weights.exists() else None
    lm_weights = f"{tuned['alpha']:g}/{tuned['beta']:g} (dev)" if tuned else "recipe's"
    print(f"| {exp.name[4:]} | {config['num_parameters']:,} | {metrics.get('epoch', '?')} | "
          f"{int(took[-1]) / 60:.1f} min | {100 * metrics['wer']:.1f}% | {last_epoch} | "
          f"{100 * greedy['wer']:.1f}% ({100 * greedy['wer_95ci'][0]:.0f}–"
          f"{100 * greedy['wer_95ci'][1]:.0f}) | {100 * greedy['cer']:.1f}% | "
          f"{100 * lm['wer']:.1f}% | {lm_weights} |")
PY
