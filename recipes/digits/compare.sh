#!/usr/bin/env bash
# RNN vs GRU vs LSTM, unidirectional vs bidirectional, at about 1.6 M parameters each, plus a
# small DeepSpeech2-like row and SpecAugment / speed-perturbation ablations of the BiLSTM, on
# FSDD connected digits (held-out speaker). Every run is `run.sh` with conf/compare.yaml and a
# few --set overrides (stages 0-5), so each lands in exp/cmp_<name>/ with its own log;
# `compare.sh table` prints the results.
#   recipes/digits/compare.sh [--data DIR] [--jobs 2] [--only NAME,NAME] [table]
# Two queues run side by side (one thread each) on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")"
data=../../../shared/data/fsdd; jobs=2; table_only=0; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    table) table_only=1; shift ;;
    *) echo "usage: $0 [--data DIR] [--jobs N] [--only NAME,NAME] [table]" >&2; exit 2 ;;
  esac
done

# name: overrides (hidden sizes chosen for ~1.6 M parameters; see the table's column)
runs=(
  "blstm:model.cell=lstm model.bidirectional=true model.hidden=160"
  "bgru:model.cell=gru model.bidirectional=true model.hidden=184"
  "brnn:model.cell=rnn model.bidirectional=true model.hidden=336"
  "lstm:model.cell=lstm model.bidirectional=false model.hidden=272"
  "gru:model.cell=gru model.bidirectional=false model.hidden=312"
  "rnn:model.cell=rnn model.bidirectional=false model.hidden=544"
  "ds2:model.subsampling=conv2d model.conv_channels=[16,16] model.cell=gru model.hidden=128 model.layers=5"
  "blstm_nospecaug:augment.specaugment=false"
  "blstm_nospeed:augment.speed_perturb=[]"
  "bgru_nospecaug:model.cell=gru model.hidden=184 augment.specaugment=false"
  "lstm_nospecaug:model.bidirectional=false model.hidden=272 augment.specaugment=false"
  "gru_nospecaug:model.cell=gru model.bidirectional=false model.hidden=312 augment.specaugment=false"
  "rnn_nospecaug:model.cell=rnn model.bidirectional=false model.hidden=544 augment.specaugment=false"
)

one() {  # name overrides...
  local name=$1; shift
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  OMP_NUM_THREADS=1 CONFIG=compare.yaml ./run.sh --data "$data" --name "cmp_$name" \
    --stage 0 "${sets[@]}" > /dev/null 2>&1 || echo "cmp_$name failed: see exp/cmp_$name/run.log"
}

if [ "$table_only" = 0 ]; then
  CONFIG=compare.yaml ./run.sh --data "$data" --name cmp_prepare --stop-stage 2  # data + LM once
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
print("| run | parameters | best epoch | train time | dev WER greedy | test WER greedy (95% CI) | test CER greedy | test WER + LM |")
print("|---|---|---|---|---|---|---|---|")
for exp in sorted(pathlib.Path("exp").glob("cmp_*")):
    try:
        config = json.loads((exp / "best/config.json").read_text())
        greedy = json.loads((exp / "test_greedy/summary.json").read_text())
        lm = json.loads((exp / "test_lm/summary.json").read_text())
    except (OSError, ValueError):
        continue
    took = re.findall(r"training took (\d+) s", (exp / "run.log").read_text())
    metrics = config["metrics"]
    print(f"| {exp.name[4:]} | {config['num_parameters']:,} | {metrics.get('epoch', '?')} | "
          f"{int(took[-1]) / 60:.1f} min | {100 * metrics['wer']:.1f}% | "
          f"{100 * greedy['wer']:.1f}% ({100 * greedy['wer_95ci'][0]:.0f}–"
          f"{100 * greedy['wer_95ci'][1]:.0f}) | {100 * greedy['cer']:.1f}% | "
          f"{100 * lm['wer']:.1f}% |")
PY
