#!/usr/bin/env bash
# speechocean762: non-native (Mandarin L1) read English, ~2.6 h of training speech after the
# dev split. Configs: conf/blstm.yaml (2-core CPU; its best result, two seeds decoded together:
# run.sh --seeds 1,2), conf/gpu_blstm.yaml (one GPU). Compare
# cells/directions with --set, e.g. --name gru_uni --set model.cell=gru
# --set model.bidirectional=false --set model.hidden=360 (similar parameter budget).
# The LM weights and blank penalty are tuned on dev for each model (the grids below); beam
# 256 (dev 52.2% against 53.1% at beam 64 for the 4-layer CPU model, RTF 0.018 against 0.013).
# Options: speechrnn stages --help (--stage, --stop-stage, --data, --name, --set, --seeds, ...).
here=$(dirname "$0")
exec speechrnn stages --recipe "$here" --corpus speechocean762 \
  --default-data ../../../shared/data/speechocean762 --config "${CONFIG:-blstm.yaml}" \
  --lm-order 3 --alpha 1.0 --beta 3.0 --beam 256 \
  --tune-alphas "0.6 1.0 1.4 1.8 2.2" --tune-betas "1 3 5 7" \
  --tune-blank-penalties "0 1 2 3" "$@"
