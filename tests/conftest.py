"""Shared fixtures: the real-speech corpora in ../shared/data (skip clearly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPEECHRNN_TEST_DATA", REPO.parent / "shared" / "data"))


def write_bad_audio(folder: Path, good) -> dict[str, Path]:
    """Broken audio files made from a good float waveform ``good`` (16 kHz)."""
    import numpy as np
    import soundfile as sf

    cases = {"missing": folder / "missing.wav"}
    (folder / "empty.wav").write_bytes(b"")
    cases["empty"] = folder / "empty.wav"
    sf.write(folder / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    cases["no samples"] = folder / "zero.wav"
    sf.write(folder / "full.flac", good, 16000)
    blob = (folder / "full.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(blob[: len(blob) // 2])
    cases["truncated"] = folder / "truncated.flac"
    sf.write(folder / "full.wav", good, 16000, subtype="PCM_16")
    blob = (folder / "full.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(blob[: len(blob) // 2])
    cases["truncated wav"] = folder / "truncated.wav"
    (folder / "text.wav").write_text("this is not audio\n" * 100)
    cases["not audio"] = folder / "text.wav"
    bad = good.copy()
    bad[100] = np.nan
    bad[200] = np.inf
    sf.write(folder / "nan.wav", bad, 16000, subtype="FLOAT")
    cases["NaN"] = folder / "nan.wav"
    return cases


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real-speech test corpora not found at {DATA} (set SPEECHRNN_TEST_DATA)")
    return DATA


SAMPLES = REPO / "data" / "samples"


@pytest.fixture(scope="session")
def so762_wavs() -> list[Path]:
    """Six speechocean762 test recordings: the corpus's first six, or without the corpora
    the project's own six in data/samples."""
    if not DATA.is_dir():
        return sorted(SAMPLES.glob("*.opus"))
    lines = (DATA / "speechocean762" / "test" / "wav.scp").read_text().splitlines()
    return [DATA / "speechocean762" / line.split()[1] for line in lines[:6]]


@pytest.fixture(scope="session")
def prepared(data_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """Manifests of every local corpus, prepared once per test session."""
    from speechrnn.data.prepare import prepare_corpus

    root = tmp_path_factory.mktemp("prepared")
    sources = {"yesno": "yesno", "an4-mini": "an4_mini", "fsdd": "fsdd",
               "speechocean762": "speechocean762"}
    out = {}
    for corpus, folder in sources.items():
        prepare_corpus(corpus, data_dir / folder, root / corpus)
        out[corpus] = root / corpus
    return out


def train_yesno(prepared: dict[str, Path], outdir: Path, *overrides: str) -> Path:
    """Train the small yesno test model (recipes/yesno/conf/blstm.yaml: whole utterances and
    their single words) into ``outdir``, with config ``overrides``; returns its best folder."""
    from speechrnn.data.manifest import read_manifest, write_manifest
    from speechrnn.data.segment import word_segments
    from speechrnn.training import load_config
    from speechrnn.training.trainer import Trainer

    train = prepared["yesno"] / "train.jsonl"
    words = outdir / "train_words.jsonl"
    write_manifest(words, [w for e in read_manifest(train) for w in word_segments(e) or []])
    config = load_config(None, [
        f"data.train=[{train},{words}]",
        f"data.dev={prepared['yesno'] / 'dev.jsonl'}", "data.max_frames=4000",
        "data.num_workers=0", "features.n_mels=40", "features.sample_rate=8000",
        "model.hidden=64", "model.layers=2", "model.dropout=0.2", "optim.lr=0.005",
        "optim.warmup_steps=5", "progress=false", "epochs=30", *overrides])
    Trainer(config, outdir).fit()
    return outdir / "best"


@pytest.fixture(scope="session")
def yesno_model(prepared, tmp_path_factory) -> tuple[Path, float]:
    """The small yesno model trained once per session: (best checkpoint, training seconds)."""
    import time

    started = time.time()
    best = train_yesno(prepared, tmp_path_factory.mktemp("yesno-exp"))
    return best, time.time() - started
