#!/usr/bin/env bash
# Connected digits from the Free Spoken Digit Dataset: 2-7 digits per utterance, one
# speaker held out for test (yweweler), the next for dev, three for training.
# Options: speechrnn stages --help (--stage, --stop-stage, --data, --name, --set, --seeds, ...).
here=$(dirname "$0")
exec speechrnn stages --recipe "$here" --corpus fsdd \
  --default-data ../../../shared/data/fsdd --config "${CONFIG:-blstm.yaml}" \
  --prepare-opts "--test-speaker yweweler" \
  --lm-order 2 --alpha 2.0 --beta 0.5 --beam 8 "$@"  # LM weights tuned on dev
