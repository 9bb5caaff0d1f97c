"""Manifest contract: round trip, relative paths, and errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrnn.data.manifest import (
    Entry,
    ManifestError,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def test_roundtrip_with_relative_paths(tmp_path):
    (tmp_path / "wav").mkdir()
    audio_path = tmp_path / "wav" / "a.wav"
    audio_path.write_bytes(b"x")
    entries = [Entry("a", str(audio_path), 1.5, "hello", "spk1"),
               Entry("b", "/elsewhere/b.wav", 2.0, "world", "spk2", offset=3.0)]
    write_manifest(tmp_path / "m.jsonl", entries)
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines[0]["audio"] == "wav/a.wav" and "offset" not in lines[0]
    assert lines[1]["audio"] == "/elsewhere/b.wav" and lines[1]["offset"] == 3.0
    assert read_manifest(tmp_path / "m.jsonl") == entries



def test_manifest_read_by_relative_path_can_be_rewritten_elsewhere(tmp_path, monkeypatch):
    """Combining manifests from different folders (e.g. two corpora) keeps paths valid."""
    (tmp_path / "corpus" / "wav").mkdir(parents=True)
    (tmp_path / "corpus" / "wav" / "a.wav").write_bytes(b"x")
    write_manifest(tmp_path / "corpus" / "m.jsonl",
                   [Entry("a", str(tmp_path / "corpus" / "wav" / "a.wav"), 1.0, "hi", "s")])
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    entries = read_manifest("../corpus/m.jsonl")
    assert Path(entries[0].audio).is_absolute() and Path(entries[0].audio).exists()
    write_manifest("combined.jsonl", entries)
    assert Path(read_manifest("combined.jsonl")[0].audio).exists()

@pytest.mark.parametrize("line,reason", [
    ("{not json", "invalid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"id": "x", "audio": "a.wav", "text": "t"}', "missing field(s): duration"),
    ('{"id": "x", "audio": "a.wav", "duration": -1, "text": "t"}', "implausible duration"),
    ('{"id": "x", "audio": "a.wav", "duration": 1e9, "text": "t"}', "implausible duration"),
    ('{"id": "x", "audio": "a.wav", "duration": "2", "text": "t"}', "finite number"),
    ('{"id": "x", "audio": "a.wav", "duration": NaN, "text": "t"}', "finite number"),
    ('{"id": "", "audio": "a.wav", "duration": 1, "text": "t"}', "non-empty string"),
    ('{"id": "x", "audio": "a.wav", "duration": 1, "text": "t", "offset": -2}', "offset"),
])
def test_bad_line_names_file_and_line(tmp_path, line, reason):
    good = '{"id": "ok", "audio": "a.wav", "duration": 1, "text": "t"}'
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert caught.value.line == 3 and f"{path}:3" in str(caught.value)
    assert reason in str(caught.value)


def test_duplicates_encoding_and_missing_audio(tmp_path):
    line = '{"id": "x", "audio": "a.wav", "duration": 1, "text": "t"}\n'
    path = tmp_path / "dup.jsonl"
    path.write_text(line + line)
    with pytest.raises(ManifestError, match="duplicate id 'x' .first on line 1"):
        read_manifest(path)
    path.write_bytes(b'{"id": "x", "audio": "a.wav", "duration": 1, "text": "\xff"}\n')
    with pytest.raises(ManifestError, match="dup.jsonl:1: not UTF-8"):
        read_manifest(path)
    path.write_text(line)
    assert "audio file not found" in validate_manifest(path)[0]
    with pytest.raises(ManifestError, match="absent.jsonl: no such file"):
        read_manifest(tmp_path / "absent.jsonl")
