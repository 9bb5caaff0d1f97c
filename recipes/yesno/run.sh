#!/usr/bin/env bash
# yesno (OpenSLR 1): 60 recordings of 8 Hebrew yes/no words. Trains in under 2 minutes on
# CPU to 1 error in the 240 test words: the one word that test recording 0_1_0_1_0_0_0_0
# lacks (its label has eight words, its audio seven; RESULTS.md).
CORPUS=yesno
DEFAULT_DATA=../../../shared/data/yesno
CONFIG=${CONFIG:-blstm.yaml}
PREPARE_OPTS=""
WORD_SEGMENTS=1  # data/train_words.jsonl: the training utterances cut into single words
LEXICON=1  # closed vocabulary: the LM decoding outputs only "yes" and "no"
LM_ORDER=2; ALPHA=0.3; BETA=0.0; BEAM=4
source "$(dirname "$0")/../stages.sh"
