#!/usr/bin/env bash
# The recipes' stage driver, `speechrnn stages`: recipes/<corpus>/run.sh calls it with the
# recipe's settings as flags, then the user's (later flags win), so a recipe folder copied
# anywhere still runs.
#   recipe:  --recipe DIR --corpus NAME --default-data DIR --config FILE [--prepare-opts "..."]
#            [--train-set NAME --test-set NAME] --lm-order N --alpha A --beta B --beam N
#            [--blank-penalty NATS] [--tune-alphas "..." --tune-betas "..."
#            [--tune-blank-penalties "..."]] [--word-segments] [--lexicon]
#   user:    [--stage N] [--stop-stage N] [--data DIR] [--name NAME] [--set k=v]...
#            [--config FILE] [--ensemble NAME,NAME... | --seeds N,N...]
# With --tune-alphas and --tune-betas (grids) stage 4 tunes the LM weights on data/dev.jsonl
# for each model (speechrnn tune-lm, kept in exp/<name>/lm_weights.json and reused until the
# model, LM, dev set, beam or grid change) instead of using --alpha/--beta; with
# --tune-blank-penalties (nats taken off the blank's log-probability) the blank penalty is
# tuned alongside, else it is --blank-penalty (default 0). --word-segments also makes
# data/<train>_words.jsonl, one line per word cut at the silences (speechrnn split-words), for
# the config to train on beside the whole utterances. --lexicon (a closed vocabulary): stage 2
# writes the training transcripts' words to data/lexicon.txt and stage 4's LM decoding outputs
# only those words.
# Stages: 0 prepare · 1 CMVN · 2 LM · 3 train · 4 decode and score · 5 report.
# --ensemble A,B decodes (stages 4-5) the runs exp/A, exp/B... together as exp/<name>, their
# frame posteriors averaged; the members are trained by their own runs (--stop-stage 3).
# --seeds 1,2 trains those members itself: stage 3 runs exp/<name>_s1, exp/<name>_s2... side
# by side (seed=N each, the cores shared out by OMP_NUM_THREADS), then decodes them together.
# Each stage skips work whose output exists (delete it to redo); everything is logged with
# timestamps to exp/<name>/run.log.
set -euo pipefail
usage() {
  echo "usage: $0 [--stage N] [--stop-stage N] [--data DIR] [--name NAME] [--set k=v]..." \
       "[--config FILE] [--ensemble NAME,NAME... | --seeds N,N...]" >&2
  exit 2
}
recipe=""; corpus=""; data=""; config=""; prepare_opts=""; train_set=train; test_set=test
lm_order=3; alpha=0.5; beta=1.0; beam=16; blank_penalty=0; tune_alphas=""; tune_betas=""
tune_blank_penalties=""; word_segments=""; lexicon=""
stage=0; stop_stage=5; name=""; extra=(); ensemble=""; seeds=""
while [ $# -gt 0 ]; do
  case "$1" in
    --recipe) recipe=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --default-data|--data) data=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --prepare-opts) prepare_opts=$2; shift 2 ;;
    --train-set) train_set=$2; shift 2 ;;
    --test-set) test_set=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --alpha) alpha=$2; shift 2 ;;
    --beta) beta=$2; shift 2 ;;
    --beam) beam=$2; shift 2 ;;
    --blank-penalty) blank_penalty=$2; shift 2 ;;
    --tune-alphas) tune_alphas=$2; shift 2 ;;
    --tune-betas) tune_betas=$2; shift 2 ;;
    --tune-blank-penalties) tune_blank_penalties=$2; shift 2 ;;
    --word-segments) word_segments=1; shift ;;
    --lexicon) lexicon=1; shift ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    --ensemble) ensemble=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
done
[ -n "$recipe" ] && [ -n "$corpus" ] && [ -n "$config" ] || {
  echo "$0: a recipe's run.sh gives --recipe, --corpus and --config" >&2; exit 2; }
name=${name:-$(basename "$config" .yaml)}
seed_list=(${seeds//,/ })
if [ -n "$seeds" ]; then
  [ -z "$ensemble" ] || { echo "$0: --seeds and --ensemble exclude each other" >&2; exit 2; }
  for seed in "${seed_list[@]}"; do ensemble+="${ensemble:+,}${name}_s$seed"; done
fi
cd "$recipe"
exp="exp/$name"
mkdir -p data "$exp"
log() { echo "$(date -u +%FT%TZ) [$corpus/$name] $*" | tee -a "$exp/run.log"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
members=("$exp/best")  # the model folder(s) that stages 4-5 decode
if [ -n "$ensemble" ]; then
  members=(); for member in ${ensemble//,/ }; do members+=("exp/$member/best"); done
fi
models=(); for member in "${members[@]}"; do models+=(--model "$member"); done
# Stage 3 trains a run until it has finished (.trained): best/ alone may be an interrupted
# run's, which is resumed. Stages 4-5 decode any model folder.
unfinished() { local member; for member in "${members[@]}"; do [ -f "$member/../.trained" ] || echo "$member"; done; }
untrained() { local member; for member in "${members[@]}"; do [ -f "$member/config.json" ] || echo "$member"; done; }

if run_stage 0 && [ ! -f data/$test_set.jsonl ]; then
  log "stage 0: prepare $corpus from $data"
  speechrnn prepare "$corpus" "$data" data $prepare_opts 2>&1 | tee -a "$exp/run.log" || true
  [ -f data/$test_set.jsonl ] || { log "prepare failed"; exit 1; }
fi
if run_stage 0 && [ -n "$word_segments" ] && [ ! -f data/${train_set}_words.jsonl ]; then
  log "stage 0: cut data/$train_set.jsonl into single words at the silences"
  speechrnn split-words data/$train_set.jsonl data/${train_set}_words.jsonl \
    2>&1 | tee -a "$exp/run.log"
fi
if run_stage 1 && [ -z "$ensemble" ] && [ ! -f "$exp/cmvn.json" ]; then
  log "stage 1: CMVN over data/$train_set.jsonl (global statistics, or the config's per-utterance mode)"
  speechrnn cmvn data/$train_set.jsonl "$exp/cmvn.json" --config "conf/$config" "${extra[@]}"
fi
if run_stage 2 && [ ! -f data/lm.arpa.gz ]; then
  log "stage 2: ${lm_order}-gram LM from the training transcripts"
  speechrnn lm build data/$train_set.jsonl data/lm.arpa.gz --order "$lm_order"
fi
if run_stage 2 && [ -n "$lexicon" ] && [ ! -f data/lexicon.txt ]; then
  log "stage 2: lexicon (the words of data/$train_set.jsonl)"
  speechrnn lm lexicon data/$train_set.jsonl data/lexicon.txt
fi
if run_stage 3 && [ -z "$ensemble" ] && [ ! -f "$exp/.trained" ]; then
  log "stage 3: train with conf/$config ${extra[*]:-}"
  start=$(date +%s)
  # an interrupted run continues from its checkpoint; one stopped before any is restarted
  resume=()
  if [ -d "$exp/last" ]; then resume=(--resume); elif [ -f "$exp/tokenizer.json" ]; then resume=(--overwrite); fi
  speechrnn train --config "conf/$config" --outdir "$exp" --set progress=false "${extra[@]}" "${resume[@]}" \
    2>&1 | tee -a "$exp/run.log"
  touch "$exp/.trained"  # reached only when training succeeded (pipefail)
  log "training took $(( $(date +%s) - start )) s"
fi
if run_stage 3 && [ -n "$seeds" ] && [ -n "$(unfinished)" ]; then
  threads=${OMP_NUM_THREADS:-$(( $(nproc) / ${#seed_list[@]} ))}
  [ "$threads" -ge 1 ] || threads=1  # more seeds than cores
  log "stage 3: train seeds ${seeds} side by side, $threads thread(s) each (logs: exp/${name}_s<seed>/run.log)"
  start=$(date +%s); groups=()
  for seed in "${seed_list[@]}"; do  # each member runs its own stages 1 (CMVN) and 3
    # setsid: a process group per member, so that an interrupt here stops its training too
    OMP_NUM_THREADS=$threads setsid ./run.sh --stage 1 --stop-stage 3 --config "$config" \
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
    --output "$exp/test_greedy" | sed -n '2,3p;$p' | tee -a "$exp/run.log"
  weights=(--alpha "$alpha" --beta "$beta" --blank-penalty "$blank_penalty")
  if [ -n "$tune_alphas" ]; then
    log "LM weights: grid search on data/dev.jsonl (alpha $tune_alphas; beta $tune_betas;" \
        "blank penalty ${tune_blank_penalties:-$blank_penalty})"
    speechrnn tune-lm "${models[@]}" --lm data/lm.arpa.gz --manifest data/dev.jsonl \
      --beam "$beam" --alphas $tune_alphas --betas $tune_betas \
      --blank-penalties ${tune_blank_penalties:-$blank_penalty} --jobs 0 \
      --json "$exp/lm_weights.json" --reuse | tail -1 | tee -a "$exp/run.log"
    weights=(--weights "$exp/lm_weights.json")
  fi
  log "LM decoding with ${weights[*]} beam $beam"
  speechrnn evaluate "${models[@]}" --manifest data/$test_set.jsonl --lm data/lm.arpa.gz \
    --beam "$beam" "${weights[@]}" ${lexicon:+--lexicon data/lexicon.txt} \
    --output "$exp/test_lm" | sed -n '2,3p;$p' | tee -a "$exp/run.log"
fi
if run_stage 5; then
  log "stage 5: report"
  # Curves and an alignment for each model trained here (--ensemble members have their own)
  if [ -z "$ensemble" ] || [ -n "$seeds" ]; then
    for member in "${members[@]}"; do
      run=$(dirname "$member")
      speechrnn plot curves "$run" --output "$run/curves.png" || true
      speechrnn plot alignment --model "$member" --manifest data/$test_set.jsonl \
        --output "$run/posteriogram.png" || true
    done
  fi
  speechrnn summary "$exp/test_greedy" "$exp/test_lm" | tee -a "$exp/run.log"
fi
