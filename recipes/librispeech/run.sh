#!/usr/bin/env bash
# LibriSpeech: prepares the official layout (downloads dev-clean, test-clean and
# train-clean-100 from OpenSLR 12 when --data holds none of them), trains on one GPU.
CORPUS=librispeech
DEFAULT_DATA=${LIBRISPEECH:-$HOME/corpora/librispeech}
CONFIG=${CONFIG:-gpu_blstm.yaml}
PREPARE_OPTS="--download --subsets train-clean-100 dev-clean test-clean"
TRAIN_SET=train-clean-100; TEST_SET=test-clean
LM_ORDER=3; ALPHA=0.8; BETA=1.5; BEAM=32
source "$(dirname "$0")/../stages.sh"
