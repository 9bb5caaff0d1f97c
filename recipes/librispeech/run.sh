#!/usr/bin/env bash
# LibriSpeech: prepares the official layout (downloads dev-clean, test-clean and
# train-clean-100 from OpenSLR 12 when --data holds none of them), trains on one GPU.
# Options: speechrnn stages --help (--stage, --stop-stage, --data, --name, --set, --seeds, ...).
here=$(dirname "$0")
exec speechrnn stages --recipe "$here" --corpus librispeech \
  --default-data "${LIBRISPEECH:-$HOME/corpora/librispeech}" \
  --config "${CONFIG:-gpu_blstm.yaml}" \
  --prepare-opts "--download --subsets train-clean-100 dev-clean test-clean" \
  --train-set train-clean-100 --test-set test-clean \
  --lm-order 3 --alpha 0.8 --beta 1.5 --beam 32 "$@"
