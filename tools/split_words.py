#!/usr/bin/env python
"""Write one manifest line per word of each utterance, cut at the silences between words, for
corpora of isolated words in sequence (yesno, digit strings). Train on these beside the whole
utterances: see ``speechrnn/data/segment.py`` for why.

    python tools/split_words.py data/train.jsonl data/train_words.jsonl [--top-db 18]

Utterances whose sounding stretches do not match their words one to one are left out and
listed.
"""

from __future__ import annotations

import argparse
import sys

from speechrnn.audio import AudioError
from speechrnn.data.manifest import ManifestError, read_manifest, write_manifest
from speechrnn.data.segment import word_segments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="input manifest (whole utterances)")
    parser.add_argument("output", help="output manifest (one line per word)")
    parser.add_argument("--top-db", type=float, default=18.0,
                        help="silence: this many dB below the loudest frame (default 18)")
    parser.add_argument("--min-word", type=float, default=0.08,
                        help="shortest sounding stretch counted as a word, seconds")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="silence kept on each side of a word, seconds")
    args = parser.parse_args()
    try:
        entries = read_manifest(args.manifest)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    segments, left_out = [], []
    for entry in entries:
        try:
            words = word_segments(entry, args.top_db, args.min_word, args.margin)
        except AudioError as error:
            print(f"skipped {entry.id}: {error}", file=sys.stderr)
            words = None
        if words is None:
            left_out.append(entry.id)
        else:
            segments.extend(words)
    count = write_manifest(args.output, segments)
    print(f"wrote {args.output}: {count} words from {len(entries) - len(left_out)} of "
          f"{len(entries)} utterances")
    if left_out:
        print(f"left out (silences do not match the words): {' '.join(left_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
