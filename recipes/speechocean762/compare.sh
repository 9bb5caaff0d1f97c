#!/usr/bin/env bash
# The central question on real speech: what do the LSTM's gates buy over GRU and a plain RNN?
# RNN vs GRU vs LSTM, unidirectional vs bidirectional, at about 1.5 M parameters each (3
# layers over log-mel stacked ×3), a DeepSpeech2-like row (2 strided 2-D convs + 5 BiGRU
# layers) and SpecAugment / speed-perturbation ablations of the BiLSTM, all from
# conf/compare.yaml with the same optimiser and number of data passes; sized so that the
# nine runs fit about two hours of a 2-core machine (two at a time, one thread each).
#   recipes/speechocean762/compare.sh [--data DIR] [--jobs 2] [--only NAME,NAME] [--stop-stage N]
#   [table]
DEFAULT_DATA=../../../shared/data/speechocean762
COMPARE_CONFIG=compare.yaml
# name: overrides (hidden sizes give 1.45-1.50 M parameters; see the table's column)
runs=(
  "blstm:model.cell=lstm model.bidirectional=true model.hidden=144"
  "bgru:model.cell=gru model.bidirectional=true model.hidden=168"
  "brnn:model.cell=rnn model.bidirectional=true model.hidden=304"
  "lstm:model.cell=lstm model.bidirectional=false model.hidden=248"
  "gru:model.cell=gru model.bidirectional=false model.hidden=288"
  "rnn:model.cell=rnn model.bidirectional=false model.hidden=520"
  "ds2:model.subsampling=conv2d model.conv_channels=[16,16] model.conv_strides=[[3,2],[1,2]] model.cell=gru model.hidden=120 model.layers=5"
  "blstm_specaug:augment.specaugment=true"
  "blstm_speed:augment.speed_perturb=[0.9,1.0,1.1]"
)
source "$(dirname "$0")/../compare.sh"
