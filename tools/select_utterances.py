#!/usr/bin/env python
"""Keep the utterances of one or more manifests whose every word is in a given vocabulary,
e.g. the digit strings among speechocean762's prompts as extra speakers for the digits recipe.

    python tools/select_utterances.py so762/train.jsonl so762/test.jsonl data/extra.jsonl \\
        --words zero one two three four five six seven eight nine
"""

from __future__ import annotations

import argparse
import sys

from speechrnn.data.manifest import ManifestError, read_manifest, write_manifest
from speechrnn.text import normalize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", help="input manifests, then the output manifest")
    parser.add_argument("--words", nargs="+", required=True, help="the allowed vocabulary")
    args = parser.parse_args()
    *inputs, output = args.manifests
    if not inputs:
        parser.error("give at least one input manifest and the output manifest")
    vocabulary = {normalize(word) for word in args.words}
    kept = []
    try:
        for path in inputs:
            for entry in read_manifest(path):
                words = normalize(entry.text).split()
                if words and set(words) <= vocabulary:
                    entry.text = " ".join(words)
                    kept.append(entry)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    count = write_manifest(output, kept)
    print(f"wrote {output}: {count} utterances, "
          f"{sum(e.duration for e in kept) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
