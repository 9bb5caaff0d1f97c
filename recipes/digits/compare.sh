#!/usr/bin/env bash
# RNN vs GRU vs LSTM, unidirectional vs bidirectional, at about 1.6 M parameters each, plus a
# small DeepSpeech2-like row and SpecAugment / speed-perturbation ablations of the BiLSTM, on
# FSDD connected digits (held-out speaker), all from conf/compare.yaml with a few overrides.
#   recipes/digits/compare.sh [--data DIR] [--jobs 2] [--only NAME,NAME] [--stop-stage N] [table]
DEFAULT_DATA=../../../shared/data/fsdd
COMPARE_CONFIG=compare.yaml
# name: overrides (hidden sizes chosen for ~1.6 M parameters; see the table's column)
runs=(
  "blstm:model.cell=lstm model.bidirectional=true model.hidden=160"
  "bgru:model.cell=gru model.bidirectional=true model.hidden=184"
  "brnn:model.cell=rnn model.bidirectional=true model.hidden=336"
  "lstm:model.cell=lstm model.bidirectional=false model.hidden=272"
  "gru:model.cell=gru model.bidirectional=false model.hidden=312"
  "rnn:model.cell=rnn model.bidirectional=false model.hidden=544"
  "ds2:model.subsampling=conv2d model.conv_channels=[16,16] model.cell=gru model.hidden=128 model.layers=5"
  "blstm_nospecaug:augment.specaugment=false"
  "blstm_nospeed:augment.speed_perturb=[]"
  "bgru_nospecaug:model.cell=gru model.hidden=184 augment.specaugment=false"
  "lstm_nospecaug:model.bidirectional=false model.hidden=272 augment.specaugment=false"
  "gru_nospecaug:model.cell=gru model.bidirectional=false model.hidden=312 augment.specaugment=false"
  "rnn_nospecaug:model.cell=rnn model.bidirectional=false model.hidden=544 augment.specaugment=false"
)
source "$(dirname "$0")/../compare.sh"
