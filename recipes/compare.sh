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

speechrnn summary --runs exp/cmp_*
