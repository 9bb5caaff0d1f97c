"""Evaluation: decode a manifest with a Transcriber, score it, and write the report — what
``speechrnn evaluate`` and the recipes' decode stage run. Everything is checked before the
output folder is touched, and the five result files replace earlier ones only together."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from speechrnn import audio
from speechrnn.data.manifest import Entry, load_entry
from speechrnn.fileio import OutputFiles
from speechrnn.scoring import Report, ScoringError, check_trn_ids, score, write_trn
from speechrnn.transcriber import Transcriber, Transcript


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


Outcome = tuple[Entry, "Transcript | audio.AudioError", float]  # result, seconds decoding


def decode_entries(transcriber: Transcriber, entries: list[Entry], progress=None
                   ) -> Iterator[Outcome]:
    """Each entry's transcript (or its AudioError) and the seconds spent on it, in order."""
    for entry in progress(entries) if progress else entries:
        started = time.perf_counter()
        try:
            result = transcriber.transcribe_waveform(
                load_entry(entry, transcriber.sample_rate), entry.audio)
        except audio.AudioError as error:
            yield entry, error, 0.0
            continue
        yield entry, result, time.perf_counter() - started


def evaluate_manifest(transcriber: Transcriber, entries: list[Entry], output: Path,
                      manifest: str | Path = "", progress=None) -> Evaluation:
    """Decode ``entries``, score them against their transcripts and write ``output``/
    hyp.jsonl, hyp.trn, ref.trn, report.txt and summary.json (all or none). An unusable
    audio file is reported on stderr and its utterance scored as all deletions.
    ``progress`` wraps the entry list (e.g. tqdm) when given."""
    check_evaluation_inputs(entries, manifest)
    return write_evaluation(decode_entries(transcriber, entries, progress), entries, output,
                            transcriber.settings(), transcriber.reference, manifest)


def write_evaluation(outcomes: Iterable[Outcome], entries: list[Entry], output: Path,
                     settings: dict, reference=lambda text: text, manifest: str | Path = ""
                     ) -> Evaluation:
    """Score decoding ``outcomes`` (however they were computed: here, or on a cluster)
    against ``entries``' transcripts, mapped through ``reference`` (a phone model's greedy
    output is scored against phones), and write the five result files (all or none)."""
    output.mkdir(parents=True, exist_ok=True)
    references = {e.id: reference(e.text) for e in entries}
    speakers = {e.id: e.speaker for e in entries}
    hypotheses: dict[str, str] = {}
    failures = 0
    audio_seconds = compute_seconds = 0.0
    with OutputFiles() as files:
        jsonl = files.open(output / "hyp.jsonl")
        for entry, result, seconds in outcomes:
            if isinstance(result, audio.AudioError):
                print(f"skipped {entry.id}: {result}", file=sys.stderr)
                failures += 1
                continue
            compute_seconds += seconds
            audio_seconds += result.duration
            hypotheses[entry.id] = result.text
            jsonl.write(json.dumps({"id": entry.id, **result.to_dict()}, ensure_ascii=False)
                        + "\n")
        write_trn(output / "hyp.trn", hypotheses, files)
        write_trn(output / "ref.trn", references, files)
        report = score(references, hypotheses, speakers)
        files.write(output / "report.txt", report.format(alignments=True) + "\n")
        summary = {**report.summary(), "rtf": compute_seconds / max(audio_seconds, 1e-9),
                   "audio_seconds": audio_seconds, "decoder": settings,
                   "manifest": str(manifest), "failed": failures}
        files.write(output / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    return Evaluation(report, summary, failures)


def comparison_table(runs: list[Path]) -> str:
    """A Markdown table of recipe runs (``exp/<name>`` folders), one row each: parameters,
    best dev epoch, training time, dev WER, the last epoch's dev CER, test WER greedy (with
    its interval) and with the LM, and the LM weights. Runs not finished are left out."""
    rows = ["| run | parameters | best epoch | train time | dev WER greedy | dev CER, last "
            "epoch | test WER greedy (95% CI) | test CER greedy | test WER + LM | LM alpha/beta |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        try:
            config = json.loads((run / "best/config.json").read_text())
            greedy = json.loads((run / "test_greedy/summary.json").read_text())
            with_lm = json.loads((run / "test_lm/summary.json").read_text())
            last = (run / "valid.csv").read_text().splitlines()[-1].split(",")
            took = re.findall(r"training took (\d+) s", (run / "run.log").read_text())
        except (OSError, ValueError):
            continue
        metrics = config["metrics"]
        # The best-WER epoch of a model that has barely learned can be one that outputs
        # almost nothing; the last epoch's dev CER shows how far it got.
        last_epoch = f"{100 * float(last[1]):.1f}% (epoch {last[3]})"
        weights = run / "lm_weights.json"  # present when the recipe tunes them on dev
        tuned = json.loads(weights.read_text()) if weights.exists() else None
        lm_weights = f"{tuned['alpha']:g}/{tuned['beta']:g} (dev)" if tuned else "recipe's"
        train_time = f"{int(took[-1]) / 60:.1f} min" if took else "?"
        rows.append(
            f"| {run.name.removeprefix('cmp_')} | {config['num_parameters']:,} | "
            f"{metrics.get('epoch', '?')} | {train_time} | {100 * metrics['wer']:.1f}% | "
            f"{last_epoch} | {100 * greedy['wer']:.1f}% ({100 * greedy['wer_95ci'][0]:.0f}–"
            f"{100 * greedy['wer_95ci'][1]:.0f}) | {100 * greedy['cer']:.1f}% | "
            f"{100 * with_lm['wer']:.1f}% | {lm_weights} |")
    return "\n".join(rows)
