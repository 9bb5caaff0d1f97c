#!/usr/bin/env bash
# yesno (OpenSLR 1): 60 recordings of 8 Hebrew yes/no words. Trains in under 2 minutes on
# CPU to 1 error in the 240 test words: the one word that test recording 0_1_0_1_0_0_0_0
# lacks (its label has eight words, its audio seven; RESULTS.md).
# Options: speechrnn stages --help (--stage, --stop-stage, --data, --name, --set, --seeds, ...).
here=$(dirname "$0")
exec speechrnn stages --recipe "$here" --corpus yesno \
  --default-data ../../../shared/data/yesno --config "${CONFIG:-blstm.yaml}" \
  --word-segments --lexicon --lm-order 2 --alpha 0.3 --beta 0.0 --beam 4 "$@"
