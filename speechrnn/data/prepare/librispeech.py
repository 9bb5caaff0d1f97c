"""LibriSpeech in its official layout: ``LibriSpeech/<subset>/<spk>/<chapter>/*.flac`` with
``<spk>-<chapter>.trans.txt``. Each subset folder becomes ``<subset>.jsonl``; subsets can be
downloaded from OpenSLR 12 when asked.
"""

from __future__ import annotations

from pathlib import Path

from speechrnn.data.prepare.common import PrepareError, PrepareReport, audio_entry, download

URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"
SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
           "train-clean-360", "train-other-500")


def prepare(src: Path, outdir: Path, subsets: list[str] | None = None,
            download_corpus: bool = False) -> PrepareReport:
    if download_corpus:
        for subset in subsets or ("dev-clean", "test-clean", "train-clean-100"):
            if subset not in SUBSETS:
                raise PrepareError(f"unknown LibriSpeech subset {subset!r}")
            download(URL.format(subset=subset), src)
    root = src / "LibriSpeech" if (src / "LibriSpeech").is_dir() else src
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name in SUBSETS] \
        if root.is_dir() else []
    if subsets:
        found = [p for p in found if p.name in subsets]
    if not found:
        raise PrepareError(f"no LibriSpeech subset folders in {root} (use --download)")
    report = PrepareReport(outdir)
    for subset in found:
        entries = []
        for transcript in sorted(subset.glob("*/*/*.trans.txt")):
            lines = transcript.read_bytes().splitlines()
            for number, raw in enumerate(lines, start=1):
                try:
                    utt_id, text = raw.decode("utf-8").strip().split(" ", 1)
                except (UnicodeDecodeError, ValueError):
                    report.skip(f"{transcript}:{number}: unreadable transcript line")
                    continue
                entry = audio_entry(report, utt_id, transcript.parent / f"{utt_id}.flac", text,
                                    utt_id.split("-")[0])
                if entry is not None:
                    entries.append(entry)
        report.write(subset.name, entries)
    return report
