"""yesno (OpenSLR 1): 60 recordings of eight Hebrew yes/no words, labels in the file names.

Split (documented, as in lhotse's and Kaldi's recipes): the files sorted by name alternate
between train (even positions) and test (odd positions), 30 each; the last 5 train files
form dev. One speaker throughout.
"""

from __future__ import annotations

from pathlib import Path

from speechrnn.data.prepare.common import PrepareError, PrepareReport, audio_entry, download

URL = "https://www.openslr.org/resources/1/waves_yesno.tar.gz"
WORDS = {"0": "no", "1": "yes"}


def prepare(src: Path, outdir: Path, download_corpus: bool = False) -> PrepareReport:
    if download_corpus:
        download(URL, src)
    folder = src / "waves_yesno" if (src / "waves_yesno").is_dir() else src
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise PrepareError(f"no yesno .wav files in {folder} (use --download to fetch them)")
    report = PrepareReport(outdir)
    entries = []
    for path in files:
        labels = path.stem.split("_")
        if not labels or any(label not in WORDS for label in labels):
            report.skip(f"{path}: file name is not a yes/no label sequence")
            continue
        entry = audio_entry(report, path.stem, path, " ".join(WORDS[x] for x in labels), "yesno")
        if entry is not None:
            entries.append(entry)
    train, test = entries[0::2], entries[1::2]
    report.write("train", train[:-5])
    report.write("dev", train[-5:])
    report.write("test", test)
    return report
