"""The ``speechrnn`` command: composes library calls; no logic a library user would miss.

Exit codes (all commands): 0 success; 1 a batch finished but some items failed (each was
reported), or an output could not be written (disk full: named, partial files removed);
2 bad usage or unusable input (a clear message naming the file, no traceback); 130
interrupted; 141 standard output closed by its reader (``| head``), quietly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from speechrnn.argtypes import (
    beam_width,
    count,
    finite_float,
    non_negative_float,
    positive_float,
    positive_int,
)

EXIT_OK, EXIT_PARTIAL, EXIT_INPUT = 0, 1, 2
EXIT_PIPE = 141  # standard output closed by its reader, as a Unix tool killed by SIGPIPE


class UsageError(Exception):
    """A problem with the command line or its inputs, reported as one line, exit code 2."""


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove it is writable, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".speechrnn-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to output directory {path}: {error.strerror}") from None
    return path


def cmd_prepare(args: argparse.Namespace) -> int:
    from speechrnn.data.prepare import corpus_options, prepare_corpus

    options = {"download_corpus": args.download} if args.download else {}
    for name in ("test_speaker", "dev_speaker", "seed", "dev_fraction", "audio_root",
                 "subsets", "train_passes"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    accepted = corpus_options(args.corpus)  # checked before the output folder is made

    def flag(name: str) -> str:
        return "--download" if name == "download_corpus" else f"--{name.replace('_', '-')}"

    unknown = [flag(name) for name in options if name not in accepted]
    if unknown:
        shown = ", ".join(flag(name) for name in accepted) or "none"
        raise UsageError(f"{args.corpus} takes no {', '.join(unknown)} (its options: {shown})")
    ensure_writable_dir(args.outdir)
    report = prepare_corpus(args.corpus, args.src, args.outdir, **options)
    print(report.summary())
    for reason in report.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def add_prepare(commands) -> None:
    from speechrnn.data.prepare import CORPORA

    parser = commands.add_parser("prepare", help="corpus → train/dev/test JSON-lines manifests")
    parser.add_argument("corpus", choices=CORPORA)
    parser.add_argument("src", type=Path, help="corpus folder (download target with --download)")
    parser.add_argument("outdir", type=Path, help="where the manifests are written")
    parser.add_argument("--download", action="store_true",
                        help="fetch the corpus from its official site into SRC first")
    parser.add_argument("--test-speaker", help="fsdd: held-out test speaker (default yweweler)")
    parser.add_argument("--dev-speaker", help="fsdd: dev speaker (default: next speaker)")
    parser.add_argument("--train-passes", type=positive_int,
                        help="fsdd: groupings per train speaker")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dev-fraction", type=float,
                        help="kaldi-dir/speechocean762/an4-mini: share of train speakers for dev")
    parser.add_argument("--audio-root", type=Path,
                        help="kaldi-dir: folder relative wav.scp paths start from")
    parser.add_argument("--subsets", nargs="+", help="librispeech: subsets to prepare")
    parser.set_defaults(handler=cmd_prepare)


# What a training run writes into its folder; cmvn.json and run.log may come first (a
# recipe's CMVN stage and log), so they do not mark a folder as holding a run.
RUN_FILES = ("tokenizer.json", "config.yaml", "train.csv", "valid.csv", "last", "last.old",
             "last.tmp", "best", "best.old", "best.tmp", "checkpoints", "tb")


def _claim_run_folder(outdir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one (tokenizer, CMVN, logs and
    checkpoints of two runs would mix) unless --resume continues it or --overwrite clears
    it first."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    found = [name for name in RUN_FILES if (outdir / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise UsageError(f"{outdir} already holds a training run ({', '.join(found)}); "
                         "--resume continues it, --overwrite replaces it")
    for name in found:
        target = outdir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()


def cmd_train(args: argparse.Namespace) -> int:
    from speechrnn.data.manifest import read_manifest
    from speechrnn.training.config import load_config
    from speechrnn.training.trainer import Trainer

    try:
        config = load_config(args.config, args.set or [])
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.detect_anomaly:
        config.detect_anomaly = True
    _claim_run_folder(args.outdir, args.resume, args.overwrite)
    for setting in (config.data.train, config.data.dev):  # before the folder is created
        for manifest in [setting] if isinstance(setting, str) else setting:
            if manifest:
                read_manifest(manifest)
    ensure_writable_dir(args.outdir)
    try:
        summary = Trainer(config, args.outdir, resume=args.resume).fit()
    except ValueError as error:
        raise UsageError(str(error)) from None
    best = [h for h in summary["history"] if "wer" in h]
    if best:
        top = min(best, key=lambda h: (h["wer"], h.get("loss", 0.0)))  # as best/ is chosen
        print(f"best dev WER {100 * top['wer']:.2f}% (epoch {top['epoch']}); "
              f"model in {args.outdir / 'best'}")
    print(f"{summary['step']} steps, {summary['skipped']} utterances/updates skipped")
    return EXIT_OK


def add_train(commands) -> None:
    parser = commands.add_parser("train", help="train a CTC acoustic model from a YAML config")
    parser.add_argument("--config", type=Path, help="YAML config (see recipes/*/conf)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.cell=gru (repeatable)")
    parser.add_argument("--outdir", type=Path, required=True, help="experiment folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTDIR/last exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in OUTDIR (checkpoints, tokenizer, logs; "
                        "not cmvn.json) and train a new one")
    parser.add_argument("--detect-anomaly", action="store_true",
                        help="torch autograd anomaly detection (slow; for debugging NaNs)")
    parser.set_defaults(handler=cmd_train)


def _read_scoring_inputs(args: argparse.Namespace, *hypothesis_paths: Path):
    """References and each hypothesis file, refusing (exit 2) an empty reference set and
    hypotheses whose ids the references lack, unless --ignore-extra says to drop them."""
    from speechrnn.scoring import read_texts

    references = read_texts(args.ref)
    if not references:
        raise UsageError(f"{args.ref}: no reference utterances in it")
    hypotheses = []
    for path in hypothesis_paths:
        texts = read_texts(path)
        extra = sorted(set(texts) - set(references))
        if extra and not args.ignore_extra:
            shown = " ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
            raise UsageError(f"{path}: {len(extra)} hypothesis id(s) not in {args.ref}: "
                             f"{shown} (--ignore-extra scores without them)")
        hypotheses.append({k: v for k, v in texts.items() if k in references})
    return references, hypotheses


def cmd_score(args: argparse.Namespace) -> int:
    from speechrnn.scoring import compare, score

    if args.compare:
        references, (hyp_a, hyp_b) = _read_scoring_inputs(args, args.hyp, args.compare)
        result = compare(references, hyp_a, hyp_b)
        if args.json:
            print(json.dumps(dataclasses.asdict(result), indent=1, allow_nan=False))
        else:
            print(f"A {args.hyp}: WER {100 * result.wer_a:.2f}%\n"
                  f"B {args.compare}: WER {100 * result.wer_b:.2f}%\n"
                  f"utterances with fewer errors: A {result.a_better}, B {result.b_better}\n"
                  f"paired bootstrap P(B not better than A) = {result.bootstrap_p:.3f}; "
                  f"sign test p = {result.sign_p:.3f}")
        return EXIT_OK
    references, (hypotheses,) = _read_scoring_inputs(args, args.hyp)
    report = score(references, hypotheses, alignment=args.alignment)
    if args.json:
        print(json.dumps(report.summary(), indent=1, allow_nan=False))
    else:
        print(report.format(alignments=args.alignments))
    if report.missing:
        print(f"speechrnn score: {len(report.missing)} of {len(references)} reference "
              "utterance(s) have no hypothesis; scored as deletions", file=sys.stderr)
    return EXIT_PARTIAL if report.missing else EXIT_OK


def add_score(commands) -> None:
    parser = commands.add_parser("score", help="WER/CER report of hypotheses against references")
    parser.add_argument("--ref", type=Path, required=True, help="trn or JSON lines (id, text)")
    parser.add_argument("--hyp", type=Path, required=True, help="trn or JSON lines (id, text)")
    parser.add_argument("--json", action="store_true", help="machine-readable summary")
    parser.add_argument("--alignments", action="store_true", help="print REF/HYP alignments")
    parser.add_argument("--alignment", default="jiwer", choices=["jiwer", "sclite"],
                        help="jiwer's unit costs, or sclite's weights (S/D/I as NIST sclite)")
    parser.add_argument("--compare", type=Path, metavar="HYP_B",
                        help="a second system's hypotheses: paired bootstrap and sign test of "
                        "B against --hyp on the same utterances")
    parser.add_argument("--ignore-extra", action="store_true",
                        help="score without hypotheses whose ids the references lack "
                        "(by default they are an error: a mismatched pair of files)")
    parser.set_defaults(handler=cmd_score)


def _transcriber(args: argparse.Namespace):
    from speechrnn.transcriber import Transcriber

    lexicon = _read_lexicon(args.lexicon) if args.lexicon else None
    try:
        return Transcriber(args.model, lm=args.lm, beam=args.beam, alpha=args.alpha,
                           beta=args.beta, blank_penalty=args.blank_penalty,
                           device=args.device, lexicon=lexicon)
    except ValueError as error:  # settings refused by the decoders (the LM's own: LMError)
        raise UsageError(str(error)) from None


def _read_lexicon(path: Path) -> list[str]:
    """The words of a lexicon file: the first field of each line, so a plain word list and a
    pronunciation lexicon (word, then phones) both work; blank and # lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--lexicon {path}: cannot read it ({error})") from None
    words = [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]
    if not words:
        raise UsageError(f"--lexicon {path}: no words in it")
    return list(dict.fromkeys(words))


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append",
                        help="checkpoint folder or bundled model name (default: the bundled "
                        "English model); give it again for an ensemble, whose frame "
                        "posteriors are averaged (the first model's LM and weights apply)")
    parser.add_argument("--lm", default="default",
                        help="ARPA file, 'default' (the model's own LM, when it ships one) "
                        "or 'none'")
    parser.add_argument("--beam", type=beam_width, help="beam width (default: the model's "
                        "tuned, else 16; 1 with --lm none: greedy)")
    parser.add_argument("--alpha", type=finite_float, help="LM weight (default: the model's tuned)")
    parser.add_argument("--beta", type=finite_float, help="word insertion bonus (default: the "
                        "model's tuned with an LM, 0 without)")
    parser.add_argument("--blank-penalty", type=non_negative_float, metavar="NATS",
                        help="taken off the blank's log-probability in every frame before "
                        "decoding, against deleted characters (default: the model's tuned "
                        "with an LM, 0 without)")
    parser.add_argument("--lexicon", type=Path, metavar="FILE",
                        help="only output these words (one per line; first field of each line)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from speechrnn import audio
    from speechrnn.data.manifest import load_entry, read_manifest
    from speechrnn.fileio import OutputError, OutputFiles
    from speechrnn.scoring import check_trn_ids, score, write_trn

    # Everything is checked before the output folder is created or touched.
    entries = read_manifest(args.manifest)
    if not entries:
        raise UsageError(f"{args.manifest}: no utterances in it")
    check_trn_ids((e.id for e in entries), str(args.manifest))
    transcriber = _transcriber(args)
    out = ensure_writable_dir(args.output)
    references = {e.id: e.text for e in entries}
    speakers = {e.id: e.speaker for e in entries}
    hypotheses: dict[str, str] = {}
    failures = 0
    audio_seconds = compute_seconds = 0.0
    with OutputFiles() as files:  # the old results stay whole until the new ones are complete
        jsonl = files.open(out / "hyp.jsonl")
        for entry in tqdm(entries, desc="decoding", unit="utt", disable=not sys.stderr.isatty()):
            try:
                started = time.perf_counter()
                waveform = load_entry(entry, transcriber.sample_rate)
                result = transcriber.transcribe_waveform(waveform, entry.audio)
                compute_seconds += time.perf_counter() - started
            except audio.AudioError as error:
                print(f"skipped {entry.id}: {error}", file=sys.stderr)
                failures += 1
                continue
            audio_seconds += result.duration
            hypotheses[entry.id] = result.text
            try:
                jsonl.write(json.dumps({"id": entry.id, **result.to_dict()},
                                       ensure_ascii=False) + "\n")
            except OSError as error:
                raise OutputError(out / "hyp.jsonl", error.strerror or str(error)) from None
        write_trn(out / "hyp.trn", hypotheses, files)
        write_trn(out / "ref.trn", references, files)
        report = score(references, hypotheses, speakers)
        files.write(out / "report.txt", report.format(alignments=True) + "\n")
        summary = {**report.summary(), "rtf": compute_seconds / max(audio_seconds, 1e-9),
                   "audio_seconds": audio_seconds, "decoder": transcriber.settings(),
                   "manifest": str(args.manifest), "failed": failures}
        files.write(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    print(report.format())
    print(f"RTF {summary['rtf']:.4f}; results in {out}")
    return EXIT_PARTIAL if failures else EXIT_OK


def add_evaluate(commands) -> None:
    parser = commands.add_parser("evaluate", help="decode a manifest and score it")
    add_decoding_options(parser)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--output", "--out", dest="output", type=Path, required=True,
                        help="output folder (hyp.jsonl, hyp.trn, ref.trn, report.txt, "
                        "summary.json; replaced only when all are complete)")
    parser.set_defaults(handler=cmd_evaluate)


def _expand_inputs(items: list[str]) -> list[tuple[Path, Path]]:
    """Audio files named by files, folders (searched recursively) and glob patterns, each with
    the folder its output path is taken relative to (the folder given, else its own folder);
    a file named twice is transcribed once."""
    from speechrnn.audio import AUDIO_SUFFIXES

    found: list[tuple[Path, Path]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += [(p, path) for p in sorted(path.rglob("*"))
                      if p.suffix.lower() in AUDIO_SUFFIXES]
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path().glob(item)) if not path.is_absolute() else sorted(
                Path(path.anchor).glob(str(path.relative_to(path.anchor))))
            found += [(p, p.parent) for p in matches]
        else:
            found.append((path, path.parent))
    unique: dict[Path, tuple[Path, Path]] = {}
    for path, base in found:
        unique.setdefault(Path(os.path.realpath(path)), (path, base))  # a loop: no error here
    return list(unique.values())


def output_paths(inputs: list[tuple[Path, Path]], outdir: Path, suffix: str) -> list[Path]:
    """One output file per input under ``outdir``, never two inputs on one file: the inputs'
    folders are mirrored below their common base folder, and where two stems still meet
    (``take.wav``, ``take.flac``) the source suffix is kept (``take.wav.txt``). UsageError
    when even that collides."""
    bases = [os.path.abspath(base) for _, base in inputs]
    root = Path(os.path.commonpath(bases)) if bases else Path()
    sources = [Path(os.path.abspath(path)) for path, _ in inputs]
    targets = [outdir / p.relative_to(root).with_suffix(f".{suffix}") for p in sources]
    taken = Counter(targets)
    targets = [t.with_name(f"{p.name}.{suffix}") if taken[t] > 1 else t
               for t, p in zip(targets, sources, strict=True)]
    owners: dict[Path, Path] = {}
    for target, (path, _) in zip(targets, inputs, strict=True):
        if target in owners:
            raise UsageError(f"{owners[target]} and {path} would both be written to {target}; "
                             "rename one or transcribe them in separate runs")
        owners[target] = path
    return targets


def _transcribe_streaming(transcriber, path: Path, chunk: float):
    from speechrnn.audio import load

    show = sys.stderr.isatty()

    def partial(text: str) -> None:
        if show:
            print(f"\r{text[-120:]}", end="", file=sys.stderr, flush=True)

    result = transcriber.transcribe_streaming(load(path, transcriber.sample_rate), chunk,
                                              partial)
    if show:
        print(file=sys.stderr)
    return result


def cmd_transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from speechrnn.audio import AudioError
    from speechrnn.fileio import OutputError, write_atomic
    from speechrnn.formats import render

    inputs = _expand_inputs(args.inputs)
    if not inputs:
        raise UsageError("no audio files matched the inputs")
    suffix = {"text": "txt", "json": "json", "srt": "srt", "vtt": "vtt", "tsv": "tsv"}
    targets = (output_paths(inputs, args.output, suffix[args.format]) if args.output
               else [None] * len(inputs))
    transcriber = _transcriber(args)
    if args.stream:
        try:
            transcriber.stream()
        except ValueError as error:
            raise UsageError(f"--stream: {error}") from None
    if args.output:
        ensure_writable_dir(args.output)
    failures = 0
    files = [path for path, _ in inputs]
    for number, (path, target) in enumerate(
            tqdm(list(zip(files, targets, strict=True)), desc="transcribing", unit="file",
                 disable=len(files) < 2 or not sys.stderr.isatty())):
        try:
            result = (_transcribe_streaming(transcriber, path, args.chunk) if args.stream
                      else transcriber(path))
        except AudioError as error:
            print(f"speechrnn transcribe: skipped {error}", file=sys.stderr)
            failures += 1
            continue
        text = render(result, args.format, str(path))
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, text)
            except OSError as error:
                if not isinstance(error, OutputError):
                    error = OutputError(target.parent, error.strerror or str(error))
                left = [str(p) for p in files[number:]]
                print(f"speechrnn transcribe: error: {error}; stopped, {len(left)} input(s) "
                      f"not done: {' '.join(left)}", file=sys.stderr)
                return EXIT_PARTIAL
        elif args.format == "text" and len(files) > 1:
            sys.stdout.write(f"{path}\t{text}")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()
    if failures:
        print(f"speechrnn transcribe: {failures} of {len(files)} file(s) failed",
              file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def add_transcribe(commands) -> None:
    from speechrnn.formats import FORMATS

    parser = commands.add_parser("transcribe", help="audio files → text with word times")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns")
    add_decoding_options(parser)
    parser.add_argument("--format", default="text", choices=FORMATS)
    parser.add_argument("--output", type=Path, help="write one file per input here, "
                        "mirroring the inputs' folders (take.wav.txt where two stems meet)")
    parser.add_argument("--stream", action="store_true",
                        help="feed each file in chunks through a streaming session "
                        "(unidirectional models); partial text goes to a terminal's stderr")
    parser.add_argument("--chunk", type=positive_float, default=0.5, metavar="SECONDS",
                        help="streaming chunk length (default 0.5)")
    parser.set_defaults(handler=cmd_transcribe)


def cmd_models(args: argparse.Namespace) -> int:
    from speechrnn.models.checkpoint import read_config
    from speechrnn.pretrained import DEFAULT_MODEL, bundled_models

    models = bundled_models()
    if not models:
        print("no bundled models installed")
    for name, path in models.items():
        config = read_config(path)
        metrics = config.get("metrics", {})
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {config.get('description', '')} "
              f"{config.get('num_parameters', 0) / 1e6:.1f} M parameters"
              + (f", test WER {100 * metrics['test_wer']:.1f}%" if "test_wer" in metrics else ""))
    return EXIT_OK


def add_models(commands) -> None:
    parser = commands.add_parser("models", help="list the bundled models")
    parser.set_defaults(handler=cmd_models)


def _lm_sentences(path: Path, case: str, kaldi_text: bool) -> list[list[str]]:
    """The normalised word lists of a text file (or a manifest's transcripts)."""
    from speechrnn.text import normalize

    if path.suffix == ".jsonl":  # a manifest: its transcripts
        from speechrnn.data.manifest import read_manifest

        lines = [e.text.encode() for e in read_manifest(path)]
    else:
        try:
            lines = path.read_bytes().splitlines()
        except OSError as error:
            raise UsageError(f"{path}: {error.strerror}") from None
    sentences = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path}:{number}: not UTF-8") from None
        if kaldi_text:
            text = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
        words = (normalize(text, case) if case != "keep" else text).split()
        if words:
            sentences.append(words)
    return sentences


def cmd_lm(args: argparse.Namespace) -> int:
    from speechrnn.decoding.lm import build_lm, check_lm_settings

    if args.arpa.is_dir():
        raise UsageError(f"{args.arpa}: is a directory; give the ARPA file's path")
    try:  # before reading the text, which can take minutes
        check_lm_settings(args.order, args.prune or ())
    except ValueError as error:
        raise UsageError(f"--prune: {error}") from None
    sentences = []
    for path in args.text:
        sentences += _lm_sentences(path, args.case, args.kaldi_text)
    if not sentences:
        raise UsageError(f"{', '.join(map(str, args.text))}: no sentences")
    ensure_writable_dir(args.arpa.parent)
    model = build_lm(sentences, args.order, args.prune or ())
    model.save(args.arpa)
    counts = ", ".join(f"{k}-grams {len(model.ngrams[k])}" for k in range(1, model.order + 1))
    print(f"wrote {args.arpa}: {counts}")
    return EXIT_OK


def add_lm(commands) -> None:
    parser = commands.add_parser("lm", help="language models")
    verbs = parser.add_subparsers(dest="verb", required=True)
    build = verbs.add_parser("build", help="modified Kneser-Ney n-gram LM from text → ARPA")
    build.add_argument("text", type=Path, nargs="+",
                       help="one sentence per line, or a .jsonl manifest (several: pooled)")
    build.add_argument("arpa", type=Path, help="output .arpa or .arpa.gz")
    build.add_argument("--order", type=positive_int, default=3)
    build.add_argument("--prune", type=count, nargs="+",
                       help="per order: drop n-grams seen at most this often (e.g. 0 0 1)")
    build.add_argument("--case", default="lower", choices=["lower", "upper", "keep"],
                       help="normalise text like the tokenizer does (default lower)")
    build.add_argument("--kaldi-text", action="store_true",
                       help="lines start with an utterance id (Kaldi text file)")
    build.set_defaults(handler=cmd_lm)


def cmd_cmvn(args: argparse.Namespace) -> int:
    from speechrnn.data.manifest import read_manifest
    from speechrnn.features import GlobalCMVN
    from speechrnn.training.config import load_config
    from speechrnn.training.setup import configured_cmvn

    try:
        config = load_config(args.config, args.set or [])
    except ValueError as error:
        raise UsageError(str(error)) from None
    entries = read_manifest(args.manifest)  # inputs first: nothing is created for bad ones
    if args.out.is_dir():
        raise UsageError(f"{args.out}: is a directory; give the JSON file's path")
    ensure_writable_dir(args.out.parent)
    try:
        cmvn = configured_cmvn(config, entries, args.max_utterances)
    except ValueError as error:
        raise UsageError(str(error)) from None
    cmvn.save(args.out)
    if isinstance(cmvn, GlobalCMVN):
        print(f"wrote {args.out}: {cmvn.count} frames")
    else:  # nothing to compute; the file records the mode instead of unused statistics
        print(f"wrote {args.out}: per-utterance normalisation (the config's cmvn: utterance)")
    return EXIT_OK


def add_cmvn(commands) -> None:
    parser = commands.add_parser("cmvn", help="global feature mean/std of a manifest → JSON "
                                 "(or the per-utterance mode, when the config asks for it)")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out", type=Path, help="cmvn.json (train reads OUTDIR/cmvn.json)")
    parser.add_argument("--config", type=Path, help="training config (its features section)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--max-utterances", type=positive_int, default=2000)
    parser.set_defaults(handler=cmd_cmvn)


def cmd_export(args: argparse.Namespace) -> int:
    from speechrnn.export import ExportError, export_checkpoint
    from speechrnn.pretrained import resolve_model

    try:  # the model is loaded and checked before the output folder is created
        target, difference = export_checkpoint(resolve_model(args.model), args.outdir,
                                               args.format, args.quantize)
    except (ExportError, ImportError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {target}: log-probabilities within {difference:.1e} of PyTorch "
          "(checked on a batch of another length)")
    return EXIT_OK


def add_export(commands) -> None:
    parser = commands.add_parser(
        "export", help="model → ONNX or TorchScript (log-probs from features, CMVN included)")
    parser.add_argument("outdir", type=Path, help="folder for the model file, config, "
                        "tokenizer and CMVN")
    parser.add_argument("--model", help="checkpoint folder or bundled model (default: the "
                        "bundled default)")
    parser.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    parser.add_argument("--quantize", choices=["int8"],
                        help="int8 dynamic quantisation of the weights (ONNX)")
    parser.set_defaults(handler=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechrnn", description=__doc__.splitlines()[0],
        epilog="exit codes: 0 ok, 1 some items failed or an output could not be written, "
        "2 bad input or usage, 130 interrupted, 141 output pipe closed",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for PyTorch (default: one per core). Several jobs "
                        "at once should share the cores: each with its default slows all "
                        "of them many times over")
    commands = parser.add_subparsers(dest="command", required=True)
    adders: list[Callable] = [add_prepare, add_train, add_evaluate, add_score, add_transcribe,
                               add_export, add_lm, add_models, add_cmvn]
    for add in adders:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from speechrnn.audio import AudioError
    from speechrnn.data.manifest import ManifestError
    from speechrnn.data.prepare import PrepareError
    from speechrnn.decoding.lm import LMError
    from speechrnn.fileio import OutputError
    from speechrnn.models.checkpoint import CheckpointError
    from speechrnn.scoring import ScoringError

    known = (UsageError, AudioError, ManifestError, PrepareError, CheckpointError, LMError,
             ScoringError, FileNotFoundError)
    try:
        return args.handler(args)
    except known as error:
        print(f"speechrnn {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # the reader went away (`... | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush cannot fail again
        return EXIT_PIPE
    except OSError as error:  # writing failed (disk full, permissions); partial files removed
        message = (str(error) if isinstance(error, OutputError) or not error.filename
                   else f"{error.filename}: {error.strerror}")
        print(f"speechrnn {args.command}: error: {message}", file=sys.stderr)
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        print(f"speechrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
