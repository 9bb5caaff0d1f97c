#!/usr/bin/env python
"""Decoder speed and WER on the same CTC log-probabilities and the same ARPA LM, in one run:
speechrnn's beam search, pyctcdecode 0.5 + kenlm (in its own venv: it needs numpy<2), and
torchaudio's flashlight ``ctc_decoder`` (lexicon from the LM vocabulary), at several beams.
Ours runs twice: with its defaults, and with the unigram look-ahead (``speechrnn+la``).

    python tools/bench/decode.py --bench ../shared/bench [--beams 16 32 64] [--limit N]

Inputs default to ../shared/bench (real BiLSTM-CTC log-probs of speechocean762 test: index
0 blank, 1 space, 2 apostrophe, 3-28 A-Z). One thread for every decoder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import torch

from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.greedy import greedy_ids
from speechrnn.decoding.lm import ArpaLM
from speechrnn.scoring import error_rates
from speechrnn.text import CharTokenizer

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
PYCTC_SCRIPT = r"""
import json, sys, time, numpy as np
from pyctcdecode import build_ctcdecoder
args = json.loads(sys.argv[1])
data = np.load(args["npz"])
ids = args["ids"]
labels = [""] + [" ", "'"] + [chr(c) for c in range(65, 91)]
unigrams = args["unigrams"]
out = {}
for beam in args["beams"]:
    decoder = build_ctcdecoder(labels, kenlm_model_path=args["arpa"], unigrams=unigrams,
                               alpha=args["alpha"], beta=args["beta"])
    decoder.decode(data[ids[0]], beam_width=beam)
    start = time.perf_counter()
    texts = [decoder.decode(data[i], beam_width=beam) for i in ids]
    out[beam] = {"seconds": time.perf_counter() - start, "texts": texts}
print(json.dumps(out))
"""


def pyctcdecode_python(venv_dir: Path) -> Path:
    """The bench's own venv with pyctcdecode 0.5, kenlm and numpy<2 (created once)."""
    python = venv_dir / "bin" / "python"
    if not python.exists():
        print(f"creating {venv_dir} (pyctcdecode 0.5, kenlm, numpy<2) ...", flush=True)
        venv.create(venv_dir, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<2",
                        "pyctcdecode==0.5.0", "kenlm"], check=True)
    return python


def run_flashlight(data, ids, arpa: Path, words: list[str], beam: int, alpha: float,
                   beta: float) -> tuple[float, list[str]]:
    from torchaudio.models.decoder import ctc_decoder

    tokens = ["-", "|", "'", *LETTERS]
    with tempfile.TemporaryDirectory() as tmp:
        lexicon = Path(tmp) / "lexicon.txt"
        lexicon.write_text("".join(f"{w} {' '.join(w)} |\n" for w in words
                                   if all(c in tokens for c in w)))
        decoder = ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=str(arpa), beam_size=beam,
                              lm_weight=alpha, word_score=beta, blank_token="-",
                              sil_token="|", unk_word="<unk>")
        emissions = [torch.from_numpy(data[i]).float()[None] for i in ids]
        decoder(emissions[0])
        start = time.perf_counter()
        texts = [" ".join(decoder(e)[0][0].words) for e in emissions]
    return time.perf_counter() - start, texts


def dump_log_probs(model: str, manifest: Path, out: Path) -> Path:
    """Our model's CTC log-probs of every utterance in ``manifest``, as an npz by id."""
    from speechrnn.data.manifest import read_manifest
    from speechrnn.transcriber import Transcriber

    entries = read_manifest(manifest)
    log_probs = Transcriber(model, lm=None, beam=1).manifest_log_probs(entries)
    np.savez(out, **{e.id: lp.numpy() for e, lp in zip(entries, log_probs, strict=True)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=Path("../shared/bench"))
    parser.add_argument("--logprobs", type=Path, help="npz of (T, 29) log-probs (default: bench)")
    parser.add_argument("--model", help="compute the log-probs with this speechrnn model "
                        "(same 29 tokens) on --manifest instead, saved to --logprobs")
    parser.add_argument("--manifest", type=Path, help="utterances for --model")
    parser.add_argument("--refs", type=Path, help="JSON id → text (default: bench)")
    parser.add_argument("--arpa", type=Path, help="ARPA LM (default: bench trigram)")
    parser.add_argument("--beams", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument("--venv", type=Path, default=Path(__file__).parent / ".venv-pyctcdecode")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    npz = args.logprobs or args.bench / "so762_test_logprobs.npz"
    if args.model:
        npz = dump_log_probs(args.model, args.manifest, args.logprobs or Path("logprobs.npz"))
    arpa = args.arpa or args.bench / "so762_train_3gram.arpa.gz"
    refs = json.loads((args.refs or args.bench / "so762_test_refs.json").read_text())
    data = np.load(npz)
    ids = list(data.keys())[: args.limit]
    references = [refs[i] for i in ids]
    lm = ArpaLM.load(arpa)
    tokenizer = CharTokenizer(["<blank>", " ", "'", *[c.lower() for c in LETTERS]])
    rows = []
    greedy = [tokenizer.decode(greedy_ids(torch.from_numpy(data[i])[None],
                                          torch.tensor([len(data[i])]))[0]) for i in ids]
    rows.append(("greedy", "-", 0.0, error_rates(references, greedy)[0]))
    ours = {"speechrnn": False, "speechrnn+la": True}  # default, and with unigram look-ahead
    for name, lookahead in ours.items():
        for beam in args.beams:
            decoder = BeamSearchDecoder(tokenizer, lm, beam=beam, alpha=args.alpha,
                                        beta=args.beta, lookahead=lookahead)
            decoder.decode(data[ids[0]])  # compile / warm up
            start = time.perf_counter()
            texts = [decoder.decode(data[i])[0].text for i in ids]
            rows.append((name, beam, (time.perf_counter() - start) / len(ids),
                         error_rates(references, texts)[0]))
    if not args.skip_peers:
        python = pyctcdecode_python(args.venv)
        words = sorted(w for (w,) in lm.ngrams[1] if w not in ("<s>", "</s>", "<unk>"))
        request = json.dumps({"npz": str(npz), "ids": ids, "arpa": str(arpa), "unigrams": words,
                              "beams": args.beams, "alpha": args.alpha, "beta": args.beta})
        result = subprocess.run([str(python), "-c", PYCTC_SCRIPT, request], check=True,
                                capture_output=True, text=True,
                                env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        for beam, item in json.loads(result.stdout.strip().splitlines()[-1]).items():
            rows.append(("pyctcdecode", int(beam), item["seconds"] / len(ids),
                         error_rates(references, item["texts"])[0]))
        for beam in args.beams:
            seconds, texts = run_flashlight(data, ids, arpa, words, beam, args.alpha, args.beta)
            rows.append(("flashlight", beam, seconds / len(ids),
                         error_rates(references, texts)[0]))
    print(f"{len(ids)} utterances from {npz}; LM {arpa}; alpha {args.alpha} beta {args.beta}; "
          "one thread")
    print(f"{'decoder':12s} {'beam':>5s} {'ms/utt':>8s} {'WER %':>7s}")
    for name, beam, seconds, wer in rows:
        print(f"{name:12s} {beam!s:>5s} {1000 * seconds:8.2f} {100 * wer:7.2f}")
    timing = {(n, b): (s, w) for n, b, s, w in rows}
    for name, beam in itertools.product(ours, args.beams):
        mine = timing[(name, beam)]
        for peer in ("pyctcdecode", "flashlight"):
            if (peer, beam) in timing:
                theirs = timing[(peer, beam)]
                print(f"beam {beam}: {name} is {theirs[0] / mine[0]:.2f}x the speed of "
                      f"{peer} (WER {100 * mine[1]:.2f}% vs {100 * theirs[1]:.2f}%)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
