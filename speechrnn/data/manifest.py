"""JSON-lines manifests: one utterance per line, the hand-off between preparers and training.

Line format: ``{"id", "audio", "duration", "text", "speaker", "offset"?}``. A relative
``audio`` path resolves against the manifest's folder. Any malformed line raises
:class:`ManifestError` naming the file and the line number.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from speechrnn import audio
from speechrnn.fileio import atomic_open, input_problem

MAX_DURATION = 4 * 3600.0  # seconds; longer "utterances" are almost surely a units mistake


class ManifestError(ValueError):
    """A manifest line is malformed; the message gives file and line."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass
class Entry:
    """One utterance: ``audio`` is absolute after reading (resolved against the manifest)."""

    id: str
    audio: str
    duration: float
    text: str
    speaker: str = ""
    # Seconds into ``audio`` where a segment starts (0 is a real offset); None: the whole
    # file. A segment's ``duration`` is always honoured when its audio is read.
    offset: float | None = None

    def to_json(self, relative_to: Path | None = None) -> str:
        data = asdict(self)
        if relative_to is not None and Path(self.audio).is_relative_to(relative_to):
            # Relative only inside the manifest's folder, so moving the folder keeps it valid.
            data["audio"] = os.path.relpath(self.audio, relative_to)
        if self.offset is None:
            del data["offset"]
        return json.dumps(data, ensure_ascii=False)


def parse_entry(data: object, base: Path, path: Path, line: int) -> Entry:
    """Validate one decoded JSON object and build its Entry."""
    if not isinstance(data, dict):
        raise ManifestError(path, line, "expected a JSON object")
    missing = [key for key in ("id", "audio", "duration", "text") if key not in data]
    if missing:
        raise ManifestError(path, line, f"missing field(s): {', '.join(missing)}")
    if not isinstance(data["id"], str) or not data["id"]:
        raise ManifestError(path, line, "id must be a non-empty string")
    if not isinstance(data["audio"], str) or not data["audio"]:
        raise ManifestError(path, line, "audio must be a non-empty path string")
    if not isinstance(data["text"], str):
        raise ManifestError(path, line, "text must be a string")
    for key in ("duration", "offset"):
        if key == "offset" and data.get(key) is None:
            continue  # no offset (or null): the whole file
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise ManifestError(path, line, f"{key} must be a finite number, got {value!r}")
    duration = float(data["duration"])
    if duration <= 0 or duration > MAX_DURATION:
        raise ManifestError(path, line, f"implausible duration {duration} s")
    if float(data.get("offset") or 0.0) < 0:
        raise ManifestError(path, line, "offset must not be negative")
    audio = Path(data["audio"])
    if not audio.is_absolute():
        audio = base / audio
    return Entry(
        id=data["id"],
        audio=str(audio),
        duration=duration,
        text=data["text"],
        speaker=str(data.get("speaker", "")),
        offset=float(data["offset"]) if data.get("offset") is not None else None,
    )


def read_manifest(path: str | Path, check_audio: bool = False) -> list[Entry]:
    """All entries of a manifest; duplicate ids, bad JSON or fields raise ManifestError.

    ``check_audio`` also requires every audio file to exist.
    """
    path = Path(path)
    problem = input_problem(path)
    if problem:
        raise ManifestError(path, None, problem)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ManifestError(path, None, f"cannot read manifest ({error.strerror})") from None
    base = path.parent.resolve()  # entries carry absolute paths, whatever the cwd
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ManifestError(path, number, f"not UTF-8 ({error.reason})") from None
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(path, number, f"invalid JSON ({error.msg})") from None
        entry = parse_entry(data, base, path, number)
        if entry.id in seen:
            raise ManifestError(path, number, f"duplicate id {entry.id!r} (first on line "
                                f"{seen[entry.id]})")
        seen[entry.id] = number
        if check_audio and not Path(entry.audio).exists():
            raise ManifestError(path, number, f"audio file not found: {entry.audio}")
        entries.append(entry)
    return entries


def load_entry(entry: Entry, sample_rate: int) -> torch.Tensor:
    """The waveform of one manifest entry: the whole file, or its segment (offset and
    duration) when it has an offset."""
    if entry.offset is None:
        return audio.load(entry.audio, sample_rate)
    return audio.load(entry.audio, sample_rate, entry.offset, entry.duration)


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` (an utterance id, a file's path) belongs to shard ``(k, n)``: by a
    stable hash, so every machine and every rerun partitions a set of inputs alike."""
    k, n = shard
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % n == k


def write_manifest(path: str | Path, entries: Iterable[Entry]) -> int:
    """Write entries atomically with audio paths relative to the manifest; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    count = 0
    with atomic_open(path) as handle:
        for entry in entries:
            handle.write(entry.to_json(relative_to=base) + "\n")
            count += 1
    return count


def validate_manifest(path: str | Path) -> list[str]:
    """Problems found in a manifest (empty list when it is usable), audio existence included."""
    try:
        entries = read_manifest(path, check_audio=True)
    except ManifestError as error:
        return [str(error)]
    return [] if entries else [f"{path}: no entries"]
