#!/usr/bin/env python
"""The phone lexicon search against the character search on the same audio and LM.

Each model's posteriors are computed once (not timed); then every decoder runs over the
same utterances at each beam, one thread, with the same trigram ARPA and each model's LM
weights. The phone search walks a prefix tree of ~130,000 CMUdict pronunciations, the
character search a trie of the LM's spellings.

    cd recipes/speechocean762
    python ../../tools/bench/lexicon_decode.py --char-model CHAR/best --phone-model PHONE/best \\
        --manifest data/test.jsonl --lm data/lm.arpa.gz [--limit 300] [--beams 16 64 256]

Prints ms per utterance, the WER of each, and the phone search's time as a multiple of the
character search's.
"""

from __future__ import annotations

import argparse
import time

import torch

from speechrnn.data.manifest import read_manifest
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.lm import ArpaLM
from speechrnn.scoring import error_rates
from speechrnn.transcriber import Transcriber


def posteriors(model: str, entries) -> tuple[Transcriber, list]:
    transcriber = Transcriber(model, lm=None, beam=1)
    return transcriber, transcriber.manifest_log_probs(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--char-model", required=True)
    parser.add_argument("--phone-model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--lm", required=True)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--beams", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    entries = read_manifest(args.manifest)[: args.limit]
    references = [e.text for e in entries]
    lm = ArpaLM.load(args.lm)
    print(f"{len(entries)} utterances of {args.manifest}; one thread")
    times: dict[tuple[str, int], float] = {}
    for kind, model in (("char", args.char_model), ("phone", args.phone_model)):
        transcriber, log_probs = posteriors(model, entries)
        tuned = transcriber.checkpoint.config.get("decoding", {})
        started = time.perf_counter()
        base = BeamSearchDecoder(transcriber.checkpoint.tokenizer, lm,
                                 alpha=tuned.get("alpha", 1.0), beta=tuned.get("beta", 3.0),
                                 blank_penalty=tuned.get("blank_penalty", 0.0))
        print(f"{kind}: tables built in {time.perf_counter() - started:.2f} s")
        base.decode(log_probs[0].numpy())  # compile (or load the compiled code) first
        for beam in args.beams:
            decoder = base.with_weights(base.alpha, base.beta, base.blank_penalty)
            decoder.beam = beam
            started = time.perf_counter()
            texts = [decoder.decode(lp.numpy())[0].text for lp in log_probs]
            seconds = time.perf_counter() - started
            times[(kind, beam)] = seconds
            wer = error_rates(references, texts)[0]
            print(f"{kind:5s} beam {beam:4d}: {1000 * seconds / len(entries):7.2f} ms/utt, "
                  f"WER {100 * wer:.2f}%")
    for beam in args.beams:
        print(f"beam {beam}: the phone search takes "
              f"{times[('phone', beam)] / times[('char', beam)]:.2f}× the character search's time")


if __name__ == "__main__":
    main()
