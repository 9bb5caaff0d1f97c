#!/usr/bin/env python
"""Average the weights of several checkpoints (e.g. the best-k epochs) into a new one.

    python tools/average_checkpoints.py exp/checkpoints/epoch-* --out exp/averaged
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechrnn.models.checkpoint import CheckpointError, average_checkpoints


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        average_checkpoints(args.checkpoints, args.out)
    except CheckpointError as error:
        print(f"average_checkpoints: error: {error}", file=sys.stderr)
        return 2
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
