#!/usr/bin/env bash
# Connected digits from the Free Spoken Digit Dataset: 2-7 digits per utterance, one
# speaker held out for test (yweweler), the next for dev, three for training.
CORPUS=fsdd
DEFAULT_DATA=../../../shared/data/fsdd
CONFIG=${CONFIG:-blstm.yaml}
PREPARE_OPTS="--test-speaker yweweler"
LM_ORDER=2; ALPHA=2.0; BETA=0.5; BEAM=8  # tuned on dev (tools/tune_lm.py)
source "$(dirname "$0")/../stages.sh"
