"""Evaluation: decode a manifest with a Transcriber, score it, and write the report — what
``speechrnn evaluate`` and the recipes' decode stage run. Everything is checked before the
output folder is touched, and the five result files replace earlier ones only together."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from speechrnn import audio
from speechrnn.data.manifest import Entry, load_entry
from speechrnn.fileio import OutputError, OutputFiles
from speechrnn.scoring import Report, ScoringError, check_trn_ids, score, write_trn
from speechrnn.transcriber import Transcriber


@dataclass
class Evaluation:
    report: Report
    summary: dict  # what summary.json holds
    failures: int  # utterances whose audio could not be used (reported, scored as deleted)


def check_evaluation_inputs(entries: list[Entry], manifest: str | Path) -> None:
    """ScoringError (naming the manifest) for inputs that cannot give a valid report: no
    utterance, or an id a trn file cannot hold."""
    if not entries:
        raise ScoringError(f"{manifest}: no utterances in it")
    check_trn_ids((e.id for e in entries), str(manifest))


def evaluate_manifest(transcriber: Transcriber, entries: list[Entry], output: Path,
                      manifest: str | Path = "", progress=None) -> Evaluation:
    """Decode ``entries``, score them against their transcripts and write ``output``/
    hyp.jsonl, hyp.trn, ref.trn, report.txt and summary.json (all or none). An unusable
    audio file is reported on stderr and its utterance scored as all deletions.
    ``progress`` wraps the entry list (e.g. tqdm) when given."""
    check_evaluation_inputs(entries, manifest)
    output.mkdir(parents=True, exist_ok=True)
    references = {e.id: e.text for e in entries}
    speakers = {e.id: e.speaker for e in entries}
    hypotheses: dict[str, str] = {}
    failures = 0
    audio_seconds = compute_seconds = 0.0
    with OutputFiles() as files:
        jsonl = files.open(output / "hyp.jsonl")
        for entry in progress(entries) if progress else entries:
            try:
                started = time.perf_counter()
                result = transcriber.transcribe_waveform(
                    load_entry(entry, transcriber.sample_rate), entry.audio)
                compute_seconds += time.perf_counter() - started
            except audio.AudioError as error:
                print(f"skipped {entry.id}: {error}", file=sys.stderr)
                failures += 1
                continue
            audio_seconds += result.duration
            hypotheses[entry.id] = result.text
            try:
                jsonl.write(json.dumps({"id": entry.id, **result.to_dict()},
                                       ensure_ascii=False) + "\n")
            except OSError as error:
                raise OutputError(output / "hyp.jsonl", error.strerror or str(error)) from None
        write_trn(output / "hyp.trn", hypotheses, files)
        write_trn(output / "ref.trn", references, files)
        report = score(references, hypotheses, speakers)
        files.write(output / "report.txt", report.format(alignments=True) + "\n")
        summary = {**report.summary(), "rtf": compute_seconds / max(audio_seconds, 1e-9),
                   "audio_seconds": audio_seconds, "decoder": transcriber.settings(),
                   "manifest": str(manifest), "failed": failures}
        files.write(output / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    return Evaluation(report, summary, failures)
