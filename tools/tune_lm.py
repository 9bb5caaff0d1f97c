#!/usr/bin/env python
"""Grid-search the LM weight (alpha) and word bonus (beta) on a dev manifest; print the best
(and write it as JSON with --json, which the recipes' decode stage reads). With --reuse, an
existing --json file is kept when it was tuned for the same model, LM, dev manifest, beam and
grid, and tuned again otherwise (so changing BEAM in a recipe re-tunes). A best weight at an
end of its grid is flagged on the "best:" line: the optimum may lie beyond it.

    python tools/tune_lm.py --model exp/best --lm data/lm.arpa.gz --manifest data/dev.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

from speechrnn.data.manifest import read_manifest
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.lm import ArpaLM
from speechrnn.scoring import error_rates
from speechrnn.transcriber import Transcriber


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, action="append",
                        help="checkpoint folder; again for an ensemble (posteriors averaged)")
    parser.add_argument("--lm", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9, 1.2])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--json", help="write the best weights here: {alpha, beta, dev_wer, ...}")
    parser.add_argument("--reuse", action="store_true",
                        help="keep --json if it was tuned with the same inputs and grid")
    args = parser.parse_args()
    models = [_digest(model) for model in args.model]
    setup = {"model": models[0] if len(models) == 1 else models, "lm": _digest(args.lm),
             "manifest": _digest(args.manifest), "beam": args.beam,
             "alphas": args.alphas, "betas": args.betas}
    if args.reuse and args.json and Path(args.json).exists():
        saved = json.loads(Path(args.json).read_text(encoding="utf-8"))
        if saved.get("setup") == setup:
            print(f"best: alpha {saved['alpha']} beta {saved['beta']} (kept {args.json})"
                  + _edge_note(saved["alpha"], saved["beta"], args.alphas, args.betas))
            return
        print(f"{args.json} was tuned with other inputs or grid: tuning again", file=sys.stderr)
    transcriber = Transcriber(args.model, lm=None, beam=1)
    entries = read_manifest(args.manifest)
    posteriors = transcriber.manifest_log_probs(entries)
    references = [e.text for e in entries]
    lm = ArpaLM.load(args.lm)
    tokenizer = transcriber.checkpoint.tokenizer
    shift = transcriber.checkpoint.frame_shift
    results = []
    for alpha, beta in itertools.product(args.alphas, args.betas):
        decoder = BeamSearchDecoder(tokenizer, lm, beam=args.beam, alpha=alpha, beta=beta,
                                    frame_shift=shift)
        hypotheses = [decoder.decode(lp)[0].text for lp in posteriors]
        wer, cer = error_rates(references, hypotheses)
        results.append((wer, cer, alpha, beta))
        print(f"alpha {alpha:4.2f} beta {beta:4.2f}: WER {100 * wer:6.2f}%  CER {100 * cer:6.2f}%",
              flush=True)
    wer, cer, alpha, beta = min(results)
    print(f"best: alpha {alpha} beta {beta} (dev WER {100 * wer:.2f}%, CER {100 * cer:.2f}%)"
          + _edge_note(alpha, beta, args.alphas, args.betas))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"alpha": alpha, "beta": beta, "dev_wer": wer, "dev_cer": cer,
                       "beam": args.beam, "manifest": args.manifest, "setup": setup},
                      out, indent=1)


def _edge_note(alpha: float, beta: float, alphas: list[float], betas: list[float]) -> str:
    """Say which chosen weight lies at an end of its grid (a grid of one value is the user's
    fixed choice; alpha cannot go below 0), or nothing."""
    ends = []
    for name, value, grid, floor in (("alpha", alpha, alphas, 0.0), ("beta", beta, betas, None)):
        if len(set(grid)) < 2:
            continue
        if value == min(grid) and value != floor:
            ends.append(f"{name} at the grid's low end")
        elif value == max(grid):
            ends.append(f"{name} at the grid's high end")
    return f"; {', '.join(ends)}: the best may lie outside the grid, widen it" if ends else ""


def _digest(path: str) -> str:
    """SHA-256 of a file, or of a model folder's files: names what the weights were tuned on.
    A name that is not a path (a bundled model) stands for itself."""
    if not Path(path).exists():
        return path
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
        else [Path(path)]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


if __name__ == "__main__":
    main()
