#!/usr/bin/env bash
# speechocean762: non-native (Mandarin L1) read English, ~2.6 h of training speech after the
# dev split. Configs: conf/blstm.yaml (2-core CPU; its best result, two seeds decoded together:
# run.sh --seeds 1,2), conf/gpu_blstm.yaml (one GPU). Compare
# cells/directions with --set, e.g. --name gru_uni --set model.cell=gru
# --set model.bidirectional=false --set model.hidden=360 (similar parameter budget).
CORPUS=speechocean762
DEFAULT_DATA=../../../shared/data/speechocean762
CONFIG=${CONFIG:-blstm.yaml}
PREPARE_OPTS=""
LM_ORDER=3; ALPHA=1.0; BETA=3.0  # the CPU model's dev-tuned weights (tools/tune_lm.py)
BEAM=256  # session 15, 4-layer CPU model: dev 53.1% at beam 64, 52.2% at 256; RTF 0.013 -> 0.018
# Stage 4 re-tunes them on dev for every model trained here (compare.sh runs included).
TUNE_ALPHAS="0.6 1.0 1.4 1.8 2.2"; TUNE_BETAS="1 3 5 7"
TUNE_BLANK_PENALTIES="0 1 2 3"  # session 23, the bf16 pair: 1 nat, dev 50.2 -> 48.3%, test 48.3%
source "$(dirname "$0")/../stages.sh"
