"""Transcription and evaluation on a Ray cluster (the optional ``ray`` extra).

Ray Data spreads the inputs over a pool of actors, each holding one :class:`Transcriber`,
so a worker loads the model once and decodes many files; Ray schedules, retries and moves the
work between machines. The results come back in input order and are identical to a single
process's (the same model, decoder and settings on every worker). For a batch scheduler
without Ray, ``--shard K/N`` of ``transcribe`` and ``evaluate`` does the same job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from speechrnn import audio
from speechrnn.data.manifest import Entry, read_manifest
from speechrnn.decoding.hypothesis import Word
from speechrnn.evaluation import (
    Evaluation,
    Outcome,
    check_evaluation_inputs,
    decode_entries,
    write_evaluation,
)
from speechrnn.transcriber import Transcriber, Transcript


class TranscriberActor:
    """One Ray actor's Transcriber: a batch of entries (as JSON) in, their transcripts (as
    JSON) or error messages out."""

    def __init__(self, options: dict, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.transcriber = Transcriber(**options)

    def __call__(self, batch: dict) -> dict:
        entries = [Entry(**json.loads(line)) for line in batch["entry"]]
        results, errors, seconds = [], [], []
        for _, result, took in decode_entries(self.transcriber, entries):
            failed = isinstance(result, audio.AudioError)
            results.append("" if failed else json.dumps(result.to_dict()))
            errors.append(str(result) if failed else "")
            seconds.append(took)
        return {"index": batch["index"], "result": results, "error": errors,
                "seconds": seconds}


def _transcript(data: dict) -> Transcript:
    words = [Word(w["word"], w["start"], w["end"], w["confidence"]) for w in data["words"]]
    return Transcript(data["text"], words, data["duration"])


def ray_outcomes(entries: Sequence[Entry], workers: int = 2, batch_size: int = 4,
                 threads_per_worker: int = 1, **transcriber_options) -> Iterator[Outcome]:
    """Decode ``entries`` on ``workers`` Ray actors (Ray must be initialised, or it starts a
    local instance); yields (entry, Transcript or AudioError, seconds) in input order."""
    import ray

    items = [{"index": i, "entry": json.dumps(entry.__dict__)} for i, entry in
             enumerate(entries)]
    dataset = ray.data.from_items(items).map_batches(
        TranscriberActor, batch_size=batch_size, concurrency=workers,
        num_cpus=threads_per_worker,
        fn_constructor_kwargs={"options": transcriber_options, "threads": threads_per_worker})
    rows = sorted(dataset.take_all(), key=lambda row: int(row["index"]))
    for row in rows:
        entry = entries[int(row["index"])]
        if row["error"]:
            # the message already names the file: keep it as the AudioError's whole text
            yield entry, audio.AudioError(entry.audio, row["error"].split(": ", 1)[-1]), 0.0
        else:
            yield entry, _transcript(json.loads(row["result"])), float(row["seconds"])


def transcribe_with_ray(paths: Sequence[str | Path], workers: int = 2, **transcriber_options
                        ) -> list[Transcript | audio.AudioError]:
    """Transcribe audio files on a Ray cluster: one Transcript per path, in order (or the
    AudioError of a file that could not be read). ``transcriber_options`` are
    :class:`Transcriber`'s (model, lm, beam, ...)."""
    entries = [Entry(str(i), str(Path(p).resolve()), 0.0, "") for i, p in enumerate(paths)]
    return [result for _, result, _ in ray_outcomes(entries, workers, **transcriber_options)]


def evaluate_with_ray(manifest: str | Path, output: str | Path, workers: int = 2,
                      **transcriber_options) -> Evaluation:
    """``speechrnn evaluate`` on a Ray cluster: the manifest decoded by ``workers`` actors,
    scored and written to ``output`` exactly as a single process would."""
    entries = read_manifest(manifest)
    check_evaluation_inputs(entries, manifest)
    local = Transcriber(**transcriber_options)  # settings and reference units for the report
    return write_evaluation(ray_outcomes(entries, workers, **transcriber_options), entries,
                            Path(output), local.settings(), local.reference, manifest)
