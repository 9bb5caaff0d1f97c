"""LM weight tuning: grid-search the LM weight (alpha), word bonus (beta) and blank penalty
on a dev manifest by its WER, the model's posteriors computed once and every grid point
decoded from them (``speechrnn tune-lm``; the recipes' decode stage reads its JSON).

A JSON file of a tuning records what it was tuned on (model and LM digests, dev manifest,
beam, grids), so that ``reuse`` keeps it only while all of those are the same.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechrnn.data.manifest import read_manifest
from speechrnn.decoding.beam import BeamSearchDecoder, decode_grid
from speechrnn.decoding.lm import ArpaLM
from speechrnn.fileio import write_atomic
from speechrnn.scoring import error_rates
from speechrnn.transcriber import Transcriber


@dataclass
class GridPoint:
    alpha: float
    beta: float
    blank_penalty: float
    wer: float
    cer: float


def digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a model folder's files: names what the weights were tuned on.
    A name that is not a path (a bundled model) stands for itself."""
    if not Path(path).exists():
        return str(path)
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
        else [Path(path)]
    hashed = hashlib.sha256()
    for file in files:
        hashed.update(file.name.encode())
        hashed.update(file.read_bytes())
    return hashed.hexdigest()


def tuning_setup(models: Sequence[str], lm: str, manifest: str, beam: int,
                 grids: dict[str, list[float]]) -> dict:
    """What a tuning depends on; a saved tuning is reused only for an equal setup."""
    digests = [digest(model) for model in models]
    return {"model": digests[0] if len(digests) == 1 else digests, "lm": digest(lm),
            "manifest": digest(manifest), "beam": beam, "alphas": grids["alpha"],
            "betas": grids["beta"], "blank_penalties": grids["blank_penalty"]}


def saved_tuning(path: str | Path, setup: dict) -> dict | None:
    """The tuning saved at ``path`` if it was made with ``setup``, else None."""
    if not Path(path).exists():
        return None
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    return saved if saved.get("setup") == setup else None


def tune(models: Sequence[str], lm: str, manifest: str, beam: int,
         grids: dict[str, list[float]], jobs: int = 1,
         on_point: Callable[[GridPoint], None] | None = None) -> tuple[GridPoint, list[GridPoint]]:
    """(best point, every point) of the grid ``grids`` ({"alpha": [...], "beta": [...],
    "blank_penalty": [...]}) by dev WER, then CER; ``jobs`` processes decode grid points at
    once; ``on_point`` hears of each point as it is done."""
    transcriber = Transcriber(list(models), lm=None, beam=1)
    entries = read_manifest(manifest)
    posteriors = transcriber.manifest_log_probs(entries)
    references = [e.text for e in entries]
    base = BeamSearchDecoder(transcriber.checkpoint.tokenizer, ArpaLM.load(lm), beam=beam,
                             frame_shift=transcriber.checkpoint.frame_shift)
    points = list(itertools.product(grids["alpha"], grids["beta"], grids["blank_penalty"]))
    decoders = [base.with_weights(alpha, beta, penalty) for alpha, beta, penalty in points]
    items = [(log_probs.numpy(), len(log_probs)) for log_probs in posteriors]
    results = []
    for (alpha, beta, penalty), decoded in zip(
            points, decode_grid(decoders, items, min(jobs, len(points))), strict=True):
        wer, cer = error_rates(references, [nbest[0].text for nbest in decoded])
        results.append(GridPoint(alpha, beta, penalty, wer, cer))
        if on_point is not None:
            on_point(results[-1])
    best = min(results, key=lambda p: (p.wer, p.cer, p.alpha, p.beta, p.blank_penalty))
    return best, results


def save_tuning(path: str | Path, best: GridPoint, beam: int, manifest: str,
                setup: dict) -> None:
    write_atomic(path, json.dumps({"alpha": best.alpha, "beta": best.beta,
                                   "blank_penalty": best.blank_penalty, "dev_wer": best.wer,
                                   "dev_cer": best.cer, "beam": beam, "manifest": manifest,
                                   "setup": setup}, indent=1))


def edge_note(best: dict, grids: dict[str, list[float]]) -> str:
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
