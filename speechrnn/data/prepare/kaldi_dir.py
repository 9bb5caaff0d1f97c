"""Kaldi data directories (``text``, ``wav.scp``, ``utt2spk``, optional ``segments``).

``SRC`` is one data dir, or a folder holding several (``train/``, ``test/``, ...): each becomes
``<name>.jsonl``. When there is a ``train`` but no ``dev``, dev is carved from train by speaker.
Relative ``wav.scp`` paths resolve against ``audio_root`` (default: the data dir's parent, the
layout of speechocean762). Piped ``wav.scp`` commands are reported and skipped.
"""

from __future__ import annotations

from pathlib import Path

from speechrnn.data.manifest import Entry
from speechrnn.data.prepare.common import (
    PrepareError,
    PrepareReport,
    audio_entry,
    download,
    speaker_split,
)
from speechrnn.fileio import write_atomic

SPEECHOCEAN762_URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"


def _read_table(path: Path, report: PrepareReport, required: bool = True) -> dict[str, str]:
    """Kaldi ``key value...`` table; lines that cannot be read are reported by number."""
    if not path.exists():
        if required:
            raise PrepareError(f"{path} not found: not a Kaldi data dir")
        return {}
    table: dict[str, str] = {}
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            report.skip(f"{path}:{number}: not UTF-8")
            continue
        if not line:
            continue
        key, _, value = line.partition(" ") if "\t" not in line else line.partition("\t")
        if key in table:
            report.skip(f"{path}:{number}: duplicate key {key!r}")
            continue
        table[key] = value.strip()
    return table


def read_data_dir(data_dir: Path, audio_root: Path, report: PrepareReport) -> list[Entry]:
    texts = _read_table(data_dir / "text", report)
    wavs = _read_table(data_dir / "wav.scp", report)
    speakers = _read_table(data_dir / "utt2spk", report, required=False)
    segments = _read_table(data_dir / "segments", report, required=False)
    entries = []
    for utt_id, text in texts.items():
        recording, offset, duration = utt_id, None, None
        if segments:
            if utt_id not in segments:
                report.skip(f"{data_dir / 'segments'}: no segment for {utt_id}")
                continue
            recording, start, end = segments[utt_id].split()
            offset, duration = float(start), float(end) - float(start)
        location = wavs.get(recording)
        if location is None:
            report.skip(f"{data_dir / 'wav.scp'}: no audio for {recording}")
            continue
        if location.endswith("|"):
            report.skip(f"{data_dir / 'wav.scp'}: {recording} is a pipe command, unsupported")
            continue
        path = Path(location)
        path = path if path.is_absolute() else audio_root / path
        entry = audio_entry(report, utt_id, path, text, speakers.get(utt_id, utt_id),
                            offset, duration)
        if entry is not None:
            entries.append(entry)
    return entries


def prepare(src: Path, outdir: Path, audio_root: Path | None = None, dev_fraction: float = 0.1,
            seed: int = 0) -> PrepareReport:
    if (src / "wav.scp").exists():
        data_dirs = [src]
    else:
        data_dirs = sorted(p for p in src.iterdir() if (p / "wav.scp").exists()) \
            if src.is_dir() else []
    if not data_dirs:
        raise PrepareError(f"no Kaldi data dir (a folder with wav.scp) in {src}")
    report = PrepareReport(outdir)
    splits = {}
    for data_dir in data_dirs:
        root = Path(audio_root) if audio_root else data_dir.parent
        splits[data_dir.name] = read_data_dir(data_dir, root, report)
    if "train" in splits and "dev" not in splits:
        splits["train"], splits["dev"] = speaker_split(splits["train"], dev_fraction, seed)
    for name, entries in splits.items():
        report.write(name, entries)
    return report


def prepare_speechocean762(src: Path, outdir: Path, dev_fraction: float = 0.1, seed: int = 0,
                           download_corpus: bool = False) -> PrepareReport:
    """speechocean762 in its OpenSLR 101 layout (train/, test/, WAVE/); dev = 10% of the train
    speakers. The corpus's pronunciation lexicon (resource/lexicon.txt) is copied to
    ``outdir``/corpus_lexicon.txt for phone models (tokenizer.lexicons)."""
    if download_corpus:
        download(SPEECHOCEAN762_URL, src)
        if (src / "speechocean762").is_dir():
            src = src / "speechocean762"
    if not (src / "train" / "wav.scp").exists():
        raise PrepareError(f"{src} is not a speechocean762 folder (train/wav.scp missing)")
    report = prepare(src, outdir, audio_root=src, dev_fraction=dev_fraction, seed=seed)
    lexicon = src / "resource" / "lexicon.txt"
    if lexicon.is_file():
        write_atomic(outdir / "corpus_lexicon.txt", lexicon.read_text(encoding="utf-8"))
    return report
