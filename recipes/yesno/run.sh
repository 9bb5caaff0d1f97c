#!/usr/bin/env bash
# yesno (OpenSLR 1): 60 recordings of 8 Hebrew yes/no words. Trains in well under 2 minutes
# on CPU to 0% WER on the 30 test recordings.
CORPUS=yesno
DEFAULT_DATA=../../../shared/data/yesno
CONFIG=${CONFIG:-blstm.yaml}
PREPARE_OPTS=""
LM_ORDER=2; ALPHA=0.3; BETA=0.0; BEAM=4
source "$(dirname "$0")/../stages.sh"
