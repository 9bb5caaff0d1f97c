#!/usr/bin/env python
"""One lent GPU machine, one call: the CUDA tests, the speechocean762 GPU recipe trained on
the current features, and end-to-end training throughput with the GPU's busy fraction.

On the GPU machine (about 10 minutes; everything it reports lands in OUT)::

    python tools/gpu_session.py run --corpus .gpu/speechocean762 --out "$OUT"

Here, afterwards: ``python tools/gpu_session.py join OUT/model`` rebuilds the checkpoint
from its shards (a fetched file may be at most 16 MiB), then decode and tune on the CPU:
``speechrnn evaluate --model OUT/model ...`` and ``speechrnn tune-lm``.

On any machine, as its own smoke test (yesno, a tiny model, the CPU, about a minute)::

    python tools/gpu_session.py run --smoke --corpus ../shared/data/yesno --out /tmp/smoke

Before a GPU call: ``python tools/gpu_session.py stage --corpus ../shared/data/speechocean762``
copies the training audio into ``.gpu/`` (git-ignored; name it in the call's ``carry``) and
prints what would travel, against the 64 MiB a call may carry.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "speechocean762"
SHARD_BYTES = 15 * 2**20  # under the 16 MiB a fetched file may have
NEEDED_MODULES = ["torch", "torchaudio", "numba", "soundfile", "jiwer", "yaml", "librosa",
                  "safetensors", "tqdm"]


class BusySampler:
    """Samples the GPU's utilisation (nvidia-smi, every 0.5 s) while a step runs: the mean
    is the share of time a kernel was running. Inert where nvidia-smi is missing."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            result = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                     "--format=csv,noheader,nounits"],
                                    capture_output=True, text=True)
            if result.returncode == 0 and result.stdout.strip():
                self.samples.append(float(result.stdout.split()[0]) / 100)

    def __enter__(self) -> BusySampler:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def busy(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def step(name: str, command: list[str], log: Path, timeout: float) -> tuple[int, float]:
    """Run one step, its output appended to ``log`` and echoed; (exit code, seconds)."""
    print(f"== {time.strftime('%H:%M:%S')} {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"== {name}\n")
        handle.flush()
        try:
            code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=timeout, cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            code = 124
    seconds = time.perf_counter() - started
    print(f"   exit {code} after {seconds:.0f} s", flush=True)
    return code, seconds


def shard(model_dir: Path, target: Path) -> None:
    """Copy a checkpoint's small files and split its weights into ≤ 15 MiB safetensors."""
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "cmvn.json"):
        shutil.copy(model_dir / name, target / name)
    tensors = load_file(str(model_dir / "model.safetensors"))
    shards: list[dict] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    for number, part in enumerate(shards):
        save_file(part, str(target / f"model-{number:02d}.safetensors"))


def join(folder: Path) -> None:
    """Rebuild ``model.safetensors`` from the shards written by :func:`shard`."""
    from safetensors.torch import load_file

    from speechrnn.models.checkpoint import write_tensors

    tensors = {}
    parts = sorted(folder.glob("model-*.safetensors"))
    if not parts:
        raise SystemExit(f"{folder}: no model-NN.safetensors shards")
    for part in parts:
        tensors.update(load_file(str(part)))
    write_tensors(tensors, folder / "model.safetensors")
    for part in parts:
        part.unlink()
    print(f"wrote {folder / 'model.safetensors'}: {len(tensors)} tensors from {len(parts)} "
          "shards")


def environment(out: Path) -> dict:
    import importlib.util

    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "missing_modules": [m for m in NEEDED_MODULES
                                if importlib.util.find_spec(m) is None]}
    (out / "environment.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return info


def run(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "session.log"
    info = environment(out)
    if info["missing_modules"]:
        print(f"missing on this machine: {', '.join(info['missing_modules'])} (carry wheels: "
              "see the device tool's notes)")
        return 2
    python = sys.executable
    work = Path(args.work).resolve()
    summary: dict = {"smoke": args.smoke}
    code, seconds = step("CUDA tests", [python, "-m", "pytest", "-q", "tests/test_cuda.py"],
                         log, 120)
    summary["cuda_tests"] = {"exit": code, "seconds": round(seconds, 1)}
    corpus = "yesno" if args.smoke else "speechocean762"
    data = work / "data"
    step("prepare", [python, "-m", "speechrnn.cli", "prepare", corpus, str(args.corpus.resolve()),
                     str(data)], log, 300)
    if args.smoke:
        config = [f"data.train={data / 'train.jsonl'}", f"data.dev={data / 'dev.jsonl'}",
                  "features.sample_rate=8000", "features.n_mels=23", "model.hidden=16",
                  "model.layers=1", "epochs=1", "data.num_workers=0", "device=auto",
                  "amp=none", "progress=false"]
        config_file = []
    else:
        config = [f"data.train={data / 'train.jsonl'}", f"data.dev={data / 'dev.jsonl'}",
                  f"max_minutes={args.minutes}", "progress=false"]
        config_file = ["--config", str(RECIPE / "conf" / "gpu_blstm.yaml")]
    exp = work / "exp"
    with BusySampler() as sampler:
        code, seconds = step("train", [python, "-m", "speechrnn.cli", "train", *config_file,
                                       "--outdir", str(exp), "--overwrite",
                                       *[x for c in config for x in ("--set", c)]],
                             log, args.minutes * 60 + 120)
    summary["train"] = {"exit": code, "seconds": round(seconds, 1), "gpu_busy": sampler.busy}
    if (exp / "valid.csv").exists():
        shutil.copy(exp / "valid.csv", out / "valid.csv")
    if (exp / "best" / "config.json").exists():
        shard(exp / "best", out / "model")
    bench = [python, "tools/bench/train.py", "--manifest", str(data / "train.jsonl"),
             "--steps", "3" if args.smoke else "20", "--epochs", "1"]
    if args.smoke:
        bench += ["--set", "features.sample_rate=8000", "--set", "model.hidden=16",
                  "--set", "model.layers=1"]
    else:
        bench += ["--device", "cuda", "--amp", "bf16", "--workers", "12",
                  "--max-frames", "30000", "--set", "data.cache_audio=true"]
    with BusySampler() as sampler:
        code, seconds = step("throughput", bench, log, 240)
    summary["throughput"] = {"exit": code, "seconds": round(seconds, 1),
                             "gpu_busy": sampler.busy}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0 if all(part["exit"] == 0 for part in summary.values() if isinstance(part, dict)) \
        else 1


def stage(args: argparse.Namespace) -> int:
    """Copy the training audio and lists into .gpu/ and report what a call would carry."""
    target = REPO / ".gpu" / "speechocean762"
    for part in ("train", "test", "resource"):  # test's lists only: its audio stays here
        shutil.copytree(args.corpus / part, target / part, dirs_exist_ok=True)
    for line in (args.corpus / "train" / "wav.scp").read_text().splitlines():
        if line.strip():
            relative = line.split()[1]
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.corpus / relative, target / relative)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True).stdout
    tree = sum((REPO / name).stat().st_size for name in tracked.decode().split("\0") if name
               and (REPO / name).is_file())
    staged = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"working tree {tree / 2**20:.1f} MiB + .gpu {staged / 2**20:.1f} MiB = "
          f"{(tree + staged) / 2**20:.1f} MiB of the 64 MiB a call carries")
    return 0 if tree + staged <= 64 * 2**20 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    run_parser = verbs.add_parser("run", help="the session's steps, results into --out")
    run_parser.add_argument("--corpus", type=Path, required=True)
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--work", default="/tmp/gpu-session",
                            help="manifests and the experiment folder")
    run_parser.add_argument("--minutes", type=float, default=6.0, help="training time limit")
    run_parser.add_argument("--smoke", action="store_true",
                            help="yesno, a tiny model, any device: checks the script itself")
    join_parser = verbs.add_parser("join", help="rebuild model.safetensors from shards")
    join_parser.add_argument("folder", type=Path)
    stage_parser = verbs.add_parser("stage", help="copy the training audio into .gpu/")
    stage_parser.add_argument("--corpus", type=Path, required=True)
    args = parser.parse_args()
    if args.verb == "join":
        join(args.folder)
        return 0
    return run(args) if args.verb == "run" else stage(args)


if __name__ == "__main__":
    sys.exit(main())
