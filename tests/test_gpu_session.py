"""tools/gpu_session.py, the script a lent GPU machine runs, checked on the CPU with its
smoke configuration: every step succeeds and the sharded checkpoint joins back exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_session_script_runs_on_the_cpu_and_its_shards_join(data_dir, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    script = str(REPO / "tools" / "gpu_session.py")
    result = subprocess.run([sys.executable, script, "run", "--smoke", "--corpus",
                             str(data_dir / "yesno"), "--out", str(out), "--work", str(work)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [summary[k]["exit"] for k in ("cuda_tests", "train", "throughput")] == [0, 0, 0]
    assert "end to end" in (out / "session.log").read_text()
    subprocess.run([sys.executable, script, "join", str(out / "model")], check=True,
                   capture_output=True)
    joined = load_file(str(out / "model" / "model.safetensors"))
    original = load_file(str(work / "exp" / "best" / "model.safetensors"))
    assert joined.keys() == original.keys()
    assert all(torch.equal(joined[k], original[k]) for k in original)
