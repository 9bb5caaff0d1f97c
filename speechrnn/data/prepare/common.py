"""Helpers shared by the corpus preparers: reports, downloads, speaker-disjoint splits."""

from __future__ import annotations

import logging
import random
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechrnn import audio
from speechrnn.data.manifest import Entry, write_manifest

log = logging.getLogger(__name__)


class PrepareError(RuntimeError):
    """The corpus cannot be prepared at all (wrong folder, missing files)."""


@dataclass
class PrepareReport:
    """What a preparer wrote (split → utterance count) and what it skipped, and why."""

    outdir: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        log.warning("skipped: %s", reason)
        self.skipped.append(reason)

    def write(self, split: str, entries: Sequence[Entry]) -> None:
        self.counts[split] = write_manifest(self.outdir / f"{split}.jsonl", entries)

    def summary(self) -> str:
        parts = [f"{split}: {count}" for split, count in self.counts.items()]
        text = f"wrote {', '.join(parts)} utterances to {self.outdir}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} item(s) (first: {self.skipped[0]})"
        return text


def audio_entry(report: PrepareReport, utt_id: str, path: Path, text: str, speaker: str,
                offset: float | None = None, duration: float | None = None) -> Entry | None:
    """Entry for one audio file (or its segment from ``offset``, ``duration`` seconds long)
    with the duration read from the header for a whole file; None (reported) if the file is
    unusable."""
    try:
        length = audio.duration(path) if duration is None else duration
    except audio.AudioError as error:
        report.skip(str(error))
        return None
    return Entry(utt_id, str(path.resolve()), round(length, 4), text, speaker, offset)


def speaker_split(entries: Sequence[Entry], fraction: float, seed: int) -> tuple[list[Entry],
                                                                                  list[Entry]]:
    """Split entries into (rest, held out) so that about ``fraction`` of the speakers (at least
    one) are held out and no speaker is on both sides."""
    speakers = sorted({e.speaker for e in entries})
    if len(speakers) < 2:
        raise PrepareError("need at least two speakers for a speaker-disjoint split")
    rng = random.Random(seed)
    rng.shuffle(speakers)
    held = set(speakers[: max(1, round(fraction * len(speakers)))])
    return ([e for e in entries if e.speaker not in held],
            [e for e in entries if e.speaker in held])


def read_text_file(path: Path, report: PrepareReport) -> str | None:
    """A UTF-8 text file's content, or None (reported) when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        report.skip(f"{path}: transcript is not UTF-8 (byte {error.start})")
        return None


def download(url: str, destination: Path) -> Path:
    """Fetch ``url`` into ``destination`` (a folder) and unpack it; returns the folder."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / url.rsplit("/", 1)[-1]
    if not archive.exists():
        log.info("downloading %s", url)
        partial = archive.with_name(archive.name + ".part")
        try:
            urllib.request.urlretrieve(url, partial)
        except OSError as error:
            raise PrepareError(f"download of {url} failed: {error}") from None
        partial.rename(archive)
    marker = destination / f".{archive.name}.unpacked"
    if not marker.exists():
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(destination)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(destination, filter="data")
        marker.touch()
    return destination
