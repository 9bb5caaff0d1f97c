#!/usr/bin/env python
"""Grid-search the LM weight (alpha), word bonus (beta) and blank penalty on a dev manifest;
print the best (and write it as JSON with --json, which the recipes' decode stage reads).
``--jobs N`` decodes N grid points at once. With --reuse, an existing --json file is kept
when it was tuned for the same model, LM, dev manifest, beam and grids, and tuned again
otherwise (so changing BEAM in a recipe re-tunes). A best setting at an end of its grid is
flagged on the "best:" line: the optimum may lie beyond it.

    python tools/tune_lm.py --model exp/best --lm data/lm.arpa.gz --manifest data/dev.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import sys
from pathlib import Path

from speechrnn.argtypes import non_negative_float
from speechrnn.data.manifest import read_manifest
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.lm import ArpaLM
from speechrnn.fileio import atomic_open
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
    parser.add_argument("--blank-penalties", type=non_negative_float, nargs="+", default=[0.0],
                        help="nats taken off the blank's log-probability (see the decoder)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="grid points decoded at once, one process each")
    parser.add_argument("--json", help="write the best weights here: {alpha, beta, "
                        "blank_penalty, dev_wer, ...}")
    parser.add_argument("--reuse", action="store_true",
                        help="keep --json if it was tuned with the same inputs and grid")
    args = parser.parse_args()
    grids = {"alpha": args.alphas, "beta": args.betas, "blank_penalty": args.blank_penalties}
    models = [_digest(model) for model in args.model]
    setup = {"model": models[0] if len(models) == 1 else models, "lm": _digest(args.lm),
             "manifest": _digest(args.manifest), "beam": args.beam,
             "alphas": args.alphas, "betas": args.betas,
             "blank_penalties": args.blank_penalties}
    if args.reuse and args.json and Path(args.json).exists():
        saved = json.loads(Path(args.json).read_text(encoding="utf-8"))
        if saved.get("setup") == setup:
            print(f"best: {_describe(saved)} (kept {args.json})" + _edge_note(saved, grids))
            return
        print(f"{args.json} was tuned with other inputs or grid: tuning again", file=sys.stderr)
    transcriber = Transcriber(args.model, lm=None, beam=1)
    entries = read_manifest(args.manifest)
    posteriors = transcriber.manifest_log_probs(entries)
    references = [e.text for e in entries]
    points = list(itertools.product(args.alphas, args.betas, args.blank_penalties))
    state = (transcriber.checkpoint.tokenizer, args.lm, args.beam,
             transcriber.checkpoint.frame_shift, posteriors)
    results = []
    with _grid_map(min(args.jobs, len(points)), state) as grid_map:
        for (alpha, beta, penalty), hypotheses in zip(
                points, grid_map(_decode_point, points), strict=True):
            wer, cer = error_rates(references, hypotheses)
            results.append((wer, cer, alpha, beta, penalty))
            print(f"alpha {alpha:4.2f} beta {beta:4.2f} blank penalty {penalty:4.2f}: "
                  f"WER {100 * wer:6.2f}%  CER {100 * cer:6.2f}%", flush=True)
    wer, cer, alpha, beta, penalty = min(results)
    best = {"alpha": alpha, "beta": beta, "blank_penalty": penalty}
    print(f"best: {_describe(best)} (dev WER {100 * wer:.2f}%, CER {100 * cer:.2f}%)"
          + _edge_note(best, grids))
    if args.json:
        with atomic_open(args.json) as out:
            json.dump({**best, "dev_wer": wer, "dev_cer": cer, "beam": args.beam,
                       "manifest": args.manifest, "setup": setup}, out, indent=1)


_state: tuple = ()  # (tokenizer, LM path, beam, frame shift, posteriors) in each process
_lm: ArpaLM | None = None


def _set_state(state: tuple) -> None:
    global _state, _lm
    _state, _lm = state, None


def _decode_point(point: tuple[float, float, float]) -> list[str]:
    """The dev hypotheses at one grid point (alpha, beta, blank penalty); the LM is loaded
    once per process."""
    global _lm
    tokenizer, lm_path, beam, frame_shift, posteriors = _state
    if _lm is None:
        _lm = ArpaLM.load(lm_path)
    alpha, beta, penalty = point
    decoder = BeamSearchDecoder(tokenizer, _lm, beam=beam, alpha=alpha, beta=beta,
                                blank_penalty=penalty, frame_shift=frame_shift)
    return [decoder.decode(log_probs)[0].text for log_probs in posteriors]


@contextlib.contextmanager
def _grid_map(jobs: int, state: tuple):
    """An ordered, lazy ``map`` over grid points: across a pool of ``jobs`` processes
    (spawned, as in speechrnn.decoding.beam.decode_many), or in this process for one job."""
    if jobs <= 1:
        _set_state(state)
        yield map
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, initializer=_set_state, initargs=(state,)) as pool:
        yield pool.imap


def _describe(weights: dict) -> str:
    return (f"alpha {weights['alpha']} beta {weights['beta']} "
            f"blank penalty {weights['blank_penalty']}")


def _edge_note(best: dict, grids: dict[str, list[float]]) -> str:
    """Say which chosen setting lies at an end of its grid (a grid of one value is the user's
    fixed choice; alpha and the blank penalty cannot go below 0), or nothing."""
    ends = []
    for name, grid in grids.items():
        value = best[name]
        floor = None if name == "beta" else 0.0
        if len(set(grid)) < 2:
            continue
        if value == min(grid) and value != floor:
            ends.append(f"{name.replace('_', ' ')} at the grid's low end")
        elif value == max(grid):
            ends.append(f"{name.replace('_', ' ')} at the grid's high end")
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
