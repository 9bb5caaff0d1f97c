#!/usr/bin/env python
"""Build a modified Kneser-Ney n-gram LM from text (or a manifest) as ARPA; the same as
``speechrnn lm build`` (see ``--help``).

    python tools/build_lm.py data/train.jsonl data/lm.arpa.gz --order 3 --prune 0 0 1
"""

import sys

from speechrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["lm", "build", *sys.argv[1:]]))
