"""Shared fixtures: the real-speech corpora in ../shared/data (skip clearly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPEECHRNN_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real-speech test corpora not found at {DATA} (set SPEECHRNN_TEST_DATA)")
    return DATA


@pytest.fixture(scope="session")
def so762_wavs(data_dir: Path) -> list[Path]:
    lines = (data_dir / "speechocean762" / "test" / "wav.scp").read_text().splitlines()
    return [data_dir / "speechocean762" / line.split()[1] for line in lines[:6]]


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


@pytest.fixture(scope="session")
def yesno_model(prepared, tmp_path_factory) -> tuple[Path, float]:
    """A small BiLSTM trained on yesno once per session (recipes/yesno/conf/blstm.yaml):
    (best checkpoint, training seconds)."""
    import time

    from speechrnn.training import load_config
    from speechrnn.training.trainer import Trainer

    outdir = tmp_path_factory.mktemp("yesno-exp")
    config = load_config(None, [
        f"data.train={prepared['yesno'] / 'train.jsonl'}",
        f"data.dev={prepared['yesno'] / 'dev.jsonl'}", "data.max_frames=4000",
        "data.num_workers=0", "features.n_mels=40", "features.sample_rate=8000",
        "model.hidden=64", "model.layers=2", "model.dropout=0.2", "optim.lr=0.005",
        "optim.warmup_steps=5", "progress=false", "epochs=30"])
    started = time.time()
    Trainer(config, outdir).fit()
    return outdir / "best", time.time() - started
