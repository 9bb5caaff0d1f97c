# Shared stage driver for recipes/<corpus>/run.sh. The recipe sets CORPUS, DEFAULT_DATA,
# CONFIG, PREPARE_OPTS, LM_ORDER, ALPHA, BETA, BEAM (and TRAIN_SET/TEST_SET when the
# preparer's manifests are not train/test), then sources this file. A recipe that sets
# TUNE_ALPHAS and TUNE_BETAS (grids) has stage 4 tune ALPHA/BETA on data/dev.jsonl for each
# model (tools/tune_lm.py, kept in exp/<name>/lm_weights.json and reused until the model, LM,
# dev set, BEAM or grid change) instead of using fixed ones; with TUNE_BLANK_PENALTIES (a grid
# of nats taken off the blank's log-probability) the blank penalty is tuned alongside, else it
# is BLANK_PENALTY (default 0). A recipe that sets WORD_SEGMENTS
# also gets data/<train>_words.jsonl, one line per word cut at the silences
# (tools/split_words.py), for its config to train on beside the whole utterances. A recipe
# with a closed vocabulary sets LEXICON: stage 2 writes the training transcripts' words to
# data/lexicon.txt and stage 4's LM decoding outputs only those words (--lexicon).
# Stages: 0 prepare · 1 CMVN · 2 LM · 3 train · 4 decode and score · 5 report.
# --ensemble A,B decodes (stages 4-5) the runs exp/A, exp/B... together as exp/<name>, their
# frame posteriors averaged; the members are trained by their own runs (--stop-stage 3).
# --seeds 1,2 trains those members itself: stage 3 runs exp/<name>_s1, exp/<name>_s2... side
# by side (seed=N each, the cores shared out by OMP_NUM_THREADS), then decodes them together.
# Each stage skips work whose output exists (delete it to redo); everything is logged with
# timestamps to exp/<name>/run.log.
set -euo pipefail
stage=0; stop_stage=5; data="$DEFAULT_DATA"; name="${NAME:-$(basename "$CONFIG" .yaml)}"
extra=(); ensemble=""; seeds=""; train_set="${TRAIN_SET:-train}"; test_set="${TEST_SET:-test}"
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    --ensemble) ensemble=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    *) echo "usage: $0 [--stage N] [--stop-stage N] [--data DIR] [--name NAME] [--set k=v]..." \
            "[--ensemble NAME,NAME... | --seeds N,N...]" >&2
       exit 2 ;;
  esac
done
seed_list=(${seeds//,/ })
if [ -n "$seeds" ]; then
  [ -z "$ensemble" ] || { echo "$0: --seeds and --ensemble exclude each other" >&2; exit 2; }
  for seed in "${seed_list[@]}"; do ensemble+="${ensemble:+,}${name}_s$seed"; done
fi
cd "$(dirname "$0")"
exp="exp/$name"
mkdir -p data "$exp"
log() { echo "$(date -u +%FT%TZ) [$CORPUS/$name] $*" | tee -a "$exp/run.log"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
members=("$exp/best")  # the model folder(s) that stages 4-5 decode
if [ -n "$ensemble" ]; then
  members=(); for member in ${ensemble//,/ }; do members+=("exp/$member/best"); done
fi
models=(); for member in "${members[@]}"; do models+=(--model "$member"); done
untrained() { local member; for member in "${members[@]}"; do [ -f "$member/config.json" ] || echo "$member"; done; }

if run_stage 0 && [ ! -f data/$test_set.jsonl ]; then
  log "stage 0: prepare $CORPUS from $data"
  speechrnn prepare "$CORPUS" "$data" data $PREPARE_OPTS 2>&1 | tee -a "$exp/run.log" || true
  [ -f data/$test_set.jsonl ] || { log "prepare failed"; exit 1; }
fi
if run_stage 0 && [ -n "${WORD_SEGMENTS:-}" ] && [ ! -f data/${train_set}_words.jsonl ]; then
  log "stage 0: cut data/$train_set.jsonl into single words at the silences"
  python ../../tools/split_words.py data/$train_set.jsonl data/${train_set}_words.jsonl \
    2>&1 | tee -a "$exp/run.log"
fi
if run_stage 1 && [ -z "$ensemble" ] && [ ! -f "$exp/cmvn.json" ]; then
  log "stage 1: CMVN over data/$train_set.jsonl (global statistics, or the config's per-utterance mode)"
  speechrnn cmvn data/$train_set.jsonl "$exp/cmvn.json" --config "conf/$CONFIG" "${extra[@]}"
fi
if run_stage 2 && [ ! -f data/lm.arpa.gz ]; then
  log "stage 2: ${LM_ORDER}-gram LM from the training transcripts"
  speechrnn lm build data/$train_set.jsonl data/lm.arpa.gz --order "$LM_ORDER"
fi
if run_stage 2 && [ -n "${LEXICON:-}" ] && [ ! -f data/lexicon.txt ]; then
  log "stage 2: lexicon (the words of data/$train_set.jsonl)"
  python - data/$train_set.jsonl data/lexicon.txt <<'PY'
import sys
from speechrnn.data.manifest import read_manifest
words = sorted({word for entry in read_manifest(sys.argv[1]) for word in entry.text.split()})
open(sys.argv[2], "w").write("".join(f"{word}\n" for word in words))
print(f"wrote {sys.argv[2]}: {len(words)} words")
PY
fi
if run_stage 3 && [ -z "$ensemble" ] && [ ! -f "$exp/best/config.json" ]; then
  log "stage 3: train with conf/$CONFIG ${extra[*]:-}"
  start=$(date +%s)
  # an interrupted run continues from its checkpoint; one stopped before any is restarted
  resume=()
  if [ -d "$exp/last" ]; then resume=(--resume); elif [ -f "$exp/tokenizer.json" ]; then resume=(--overwrite); fi
  speechrnn train --config "conf/$CONFIG" --outdir "$exp" --set progress=false "${extra[@]}" "${resume[@]}" \
    2>&1 | tee -a "$exp/run.log"
  log "training took $(( $(date +%s) - start )) s"
fi
if run_stage 3 && [ -n "$seeds" ] && [ -n "$(untrained)" ]; then
  threads=${OMP_NUM_THREADS:-$(( $(nproc) / ${#seed_list[@]} ))}
  [ "$threads" -ge 1 ] || threads=1  # more seeds than cores
  log "stage 3: train seeds ${seeds} side by side, $threads thread(s) each (logs: exp/${name}_s<seed>/run.log)"
  start=$(date +%s); groups=()
  for seed in "${seed_list[@]}"; do  # each member runs its own stages 1 (CMVN) and 3
    # setsid: a process group per member, so that an interrupt here stops its training too
    OMP_NUM_THREADS=$threads setsid "./$(basename "$0")" --stage 1 --stop-stage 3 \
      --name "${name}_s$seed" "${extra[@]}" --set "seed=$seed" >/dev/null 2>>"$exp/run.log" </dev/null &
    groups+=("-$!")
  done
  trap 'kill -TERM -- "${groups[@]}" 2>/dev/null; log "interrupted"; exit 130' INT TERM
  failed=0; for group in "${groups[@]}"; do wait "${group#-}" || failed=1; done
  trap - INT TERM
  log "training the seeds took $(( $(date +%s) - start )) s"
  [ "$failed" -eq 0 ] || { log "a seed's training failed: see its run.log"; exit 1; }
fi
if run_stage 4 || run_stage 5; then
  missing=$(untrained)
  [ -z "$missing" ] || { log "not trained: $missing"; exit 1; }
fi
if run_stage 4; then
  log "stage 4: decode and score data/$test_set.jsonl"
  speechrnn evaluate "${models[@]}" --manifest data/$test_set.jsonl --beam 1 --lm none \
    --output "$exp/test_greedy" | tail -4 | tee -a "$exp/run.log"
  BLANK_PENALTY=${BLANK_PENALTY:-0}
  if [ -n "${TUNE_ALPHAS:-}" ]; then
    log "LM weights: grid search on data/dev.jsonl (alpha $TUNE_ALPHAS; beta $TUNE_BETAS;" \
        "blank penalty ${TUNE_BLANK_PENALTIES:-$BLANK_PENALTY})"
    cores=$(python -c 'import os
print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())')
    python ../../tools/tune_lm.py "${models[@]}" --lm data/lm.arpa.gz \
      --manifest data/dev.jsonl --beam "$BEAM" --alphas $TUNE_ALPHAS --betas $TUNE_BETAS \
      --blank-penalties ${TUNE_BLANK_PENALTIES:-$BLANK_PENALTY} --jobs "$cores" \
      --json "$exp/lm_weights.json" --reuse | tail -1 | tee -a "$exp/run.log"
    read -r ALPHA BETA BLANK_PENALTY < <(python -c 'import json, sys
w = json.load(open(sys.argv[1]))
print(w["alpha"], w["beta"], w["blank_penalty"])' "$exp/lm_weights.json")
  fi
  log "LM decoding with alpha $ALPHA beta $BETA blank penalty $BLANK_PENALTY beam $BEAM"
  speechrnn evaluate "${models[@]}" --manifest data/$test_set.jsonl --lm data/lm.arpa.gz \
    --beam "$BEAM" --alpha "$ALPHA" --beta "$BETA" --blank-penalty "$BLANK_PENALTY" \
    ${LEXICON:+--lexicon data/lexicon.txt} --output "$exp/test_lm" | tail -4 | tee -a "$exp/run.log"
fi
if run_stage 5; then
  log "stage 5: report"
  # Curves and an alignment for each model trained here (--ensemble members have their own)
  if [ -z "$ensemble" ] || [ -n "$seeds" ]; then
    for member in "${members[@]}"; do
      run=$(dirname "$member")
      python ../../tools/plot_training.py "$run" --out "$run/curves.png" || true
      python ../../tools/plot_alignment.py --model "$member" --manifest data/$test_set.jsonl \
        --out "$run/posteriogram.png" || true
    done
  fi
  python - "$exp" "${members[@]}" <<'PY' | tee -a "$exp/run.log"
import json, sys
exp, members = sys.argv[1], sys.argv[2:]
parameters = sum(json.load(open(f"{member}/config.json"))["num_parameters"] for member in members)
for kind in ("test_greedy", "test_lm"):
    s = json.load(open(f"{exp}/{kind}/summary.json"))
    print(f"{kind}: WER {100 * s['wer']:.2f}% CER {100 * s['cer']:.2f}% "
          f"(95% CI {100 * s['wer_95ci'][0]:.1f}-{100 * s['wer_95ci'][1]:.1f}) "
          f"RTF {s['rtf']:.4f}; {parameters:,} parameters")
PY
fi
