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
import subprocess
import sys
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
    shard,
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


# The options a corpus may declare (its preparer's keyword parameters), as flags.
PREPARE_OPTIONS: dict[str, tuple[str, dict]] = {
    "download_corpus": ("--download", dict(action="store_true", help="fetch the corpus from "
                                           "its official site into SRC first")),
    "test_speaker": ("--test-speaker", dict(help="held-out test speaker (default yweweler)")),
    "dev_speaker": ("--dev-speaker", dict(help="dev speaker (default: the next one)")),
    "train_passes": ("--train-passes", dict(type=positive_int,
                                            help="groupings of each train speaker's digits")),
    "min_digits": ("--min-digits", dict(type=positive_int, help="digits per utterance, "
                                        "at least")),
    "max_digits": ("--max-digits", dict(type=positive_int, help="digits per utterance, "
                                        "at most")),
    "seed": ("--seed", dict(type=int, help="seed of the split (and of generated audio)")),
    "dev_fraction": ("--dev-fraction", dict(type=positive_float, help="share of the train "
                                            "speakers (or utterances) held out for dev")),
    "audio_root": ("--audio-root", dict(type=Path, help="folder relative wav.scp paths start "
                                        "from (default: the data dir's parent)")),
    "subsets": ("--subsets", dict(nargs="+", help="subsets to prepare, e.g. train-clean-100 "
                                  "dev-clean test-clean")),
}


def cmd_prepare(args: argparse.Namespace) -> int:
    from speechrnn.data.prepare import corpus_options, prepare_corpus

    given = {name: getattr(args, name, None) for name in corpus_options(args.corpus)}
    # an option left out is the preparer's default (--seed 0 is given, --download not)
    options = {name: value for name, value in given.items()
               if value is not None and value is not False}
    ensure_writable_dir(args.outdir)
    report = prepare_corpus(args.corpus, args.src, args.outdir, **options)
    print(report.summary())
    for reason in report.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def add_prepare(commands) -> None:
    from speechrnn.data.prepare import CORPORA, corpus_description, corpus_options

    parser = _command(commands, "prepare", help="corpus → train/dev/test JSON-lines manifests",
                      description="A corpus in its official layout → train/dev/test manifests "
                      "(JSON lines). `speechrnn prepare CORPUS --help` says what each corpus "
                      "reads and how it splits.")
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name in CORPORA:
        description = corpus_description(name)
        corpus = _command(corpora, name, help=description.splitlines()[0],
                          description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
        corpus.add_argument("src", type=Path,
                            help="corpus folder (download target with --download)")
        corpus.add_argument("outdir", type=Path, help="where the manifests are written")
        for option in corpus_options(name):
            flag, spec = PREPARE_OPTIONS[option]
            corpus.add_argument(flag, dest=option, **spec)
    parser.set_defaults(handler=cmd_prepare)


def cmd_train(args: argparse.Namespace) -> int:
    from speechrnn.data.manifest import read_manifest
    from speechrnn.training.checkpoints import claim_run_folder
    from speechrnn.training.config import SMALL_DATA_DEFAULTS, load_config
    from speechrnn.training.trainer import Trainer

    # Without --config: the small-data defaults (a few hours of speech or less), then --set.
    overrides = (SMALL_DATA_DEFAULTS if args.config is None else []) + (args.set or [])
    try:
        config = load_config(args.config, overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.detect_anomaly:
        config.detect_anomaly = True
    try:
        claim_run_folder(args.outdir, args.resume, args.overwrite)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for setting in (config.data.train, config.data.dev):  # before the folder is created
        for manifest in [setting] if isinstance(setting, str) else setting:
            if manifest:
                read_manifest(manifest)
    ensure_writable_dir(args.outdir)
    try:
        trainer = Trainer(config, args.outdir, resume=args.resume)
        if not args.quiet:
            print(trainer.describe(), flush=True)
        summary = trainer.fit()
    except ValueError as error:
        raise UsageError(str(error)) from None
    top = [h for h in summary["history"] if h["epoch"] == summary["best_epoch"] and "wer" in h]
    if top:  # the epoch best/ holds
        print(f"best dev WER {100 * top[0]['wer']:.2f}% (epoch {top[0]['epoch']}); "
              f"model in {args.outdir / 'best'}")
    print(f"{summary['step']} steps, {summary['skipped']} utterances/updates skipped")
    return EXIT_OK


def add_train(commands) -> None:
    parser = _command(commands, "train", help="train a CTC acoustic model from a YAML config")
    parser.add_argument("--config", type=Path, help="YAML config (see recipes/*/conf); "
                        "without one, small-data defaults: a 2 x 128 bidirectional LSTM over "
                        "80 log-mel stacked x3, batches of 3,000 frames (30 s), 30 epochs")
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
    parser = _command(commands, "score", help="WER/CER report of hypotheses against references")
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
    if args.weights is not None:
        tuned = _read_weights(args.weights)
        for name in ("alpha", "beta", "blank_penalty"):
            if getattr(args, name) is None:
                setattr(args, name, tuned[name])
    try:
        return Transcriber(args.model, lm=args.lm, beam=args.beam, alpha=args.alpha,
                           beta=args.beta, blank_penalty=args.blank_penalty,
                           device=args.device, lexicon=lexicon)
    except ValueError as error:  # settings refused by the decoders (the LM's own: LMError)
        raise UsageError(str(error)) from None


def _read_weights(path: Path) -> dict:
    """alpha, beta and blank_penalty of a tuning's JSON, each a finite number."""
    from speechrnn.fileio import input_problem

    problem = input_problem(path)
    if problem:
        raise UsageError(f"--weights {path}: {problem}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weights = {name: data[name] for name in ("alpha", "beta", "blank_penalty")}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(f"--weights {path}: not a tuning's JSON ({error})") from None
    from speechrnn.decoding.checks import check_blank_penalty, check_finite

    try:
        check_finite("alpha", weights["alpha"])
        check_finite("beta", weights["beta"])
        check_blank_penalty(weights["blank_penalty"])
    except ValueError as error:
        raise UsageError(f"--weights {path}: {error}") from None
    return weights


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
    parser.add_argument("--shard", type=shard, metavar="K/N",
                        help="only the K-th of N parts of the inputs (K from 0), split by a "
                        "stable hash of each utterance id or file path: N machines (a Slurm "
                        "array job) each run one; their outputs concatenate")
    parser.add_argument("--weights", type=Path, metavar="JSON",
                        help="alpha, beta and blank penalty from a tuning (speechrnn tune-lm "
                        "--json); --alpha/--beta/--blank-penalty given too win")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from speechrnn.data.manifest import in_shard, read_manifest
    from speechrnn.evaluation import check_evaluation_inputs, evaluate_manifest

    # Everything is checked before the output folder is created or touched.
    entries = read_manifest(args.manifest)
    if args.shard:
        entries = [e for e in entries if in_shard(e.id, args.shard)]
    check_evaluation_inputs(entries, args.manifest)
    transcriber = _transcriber(args)
    out = ensure_writable_dir(args.output)
    result = evaluate_manifest(
        transcriber, entries, out, args.manifest,
        progress=lambda items: tqdm(items, desc="decoding", unit="utt",
                                    disable=args.quiet or not sys.stderr.isatty()))
    print(result.report.format())
    if transcriber.unit == "phone":
        print("greedy output of a phone model: the error rates are over phones (PER); a "
              "beam above 1 decodes words")
    print(f"RTF {result.summary['rtf']:.4f}; results in {out}")
    return EXIT_PARTIAL if result.failures else EXIT_OK


def add_evaluate(commands) -> None:
    parser = _command(commands, "evaluate", help="decode a manifest and score it")
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
        if item == "-":  # standard input
            found.append((path, Path()))
        elif path.is_dir():
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
    targets = [outdir / (f"stdin.{suffix}" if str(path) == "-" else
                         source.relative_to(root).with_suffix(f".{suffix}"))
               for (path, _), source in zip(inputs, sources, strict=True)]
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


def _transcribe_file(transcriber, path: Path, show_progress: bool):
    """One file; on a terminal, a long one shows audio time done, total and the ETA."""
    from speechrnn.audio import load

    waveform = load(path, transcriber.sample_rate)
    seconds = waveform.numel() / transcriber.sample_rate
    if not show_progress or seconds <= transcriber.max_segment:
        return transcriber.transcribe_waveform(waveform, path)
    from tqdm import tqdm

    with tqdm(total=round(seconds, 1), unit="s", desc=path.name, leave=False,
              bar_format="{desc}: {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]") as bar:
        def advance(done: float, total: float) -> None:
            bar.update(round(done, 1) - bar.n)

        return transcriber.transcribe_waveform(waveform, path, advance)


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
    from speechrnn.formats import SINGLE_DOCUMENT, TSV_HEADER, render, tsv_rows

    inputs = _expand_inputs(args.inputs)
    if args.shard:
        from speechrnn.data.manifest import in_shard

        # by the path below the folder or pattern given: the same on every machine
        inputs = [(path, base) for path, base in inputs
                  if in_shard(os.path.relpath(path, base), args.shard)]
    if not inputs:
        raise UsageError("no audio files matched the inputs" + (" in this shard" if args.shard
                                                                  else ""))
    several = len(inputs) > 1 and not args.output
    if several and args.format in SINGLE_DOCUMENT:
        raise UsageError(f"{args.format} of {len(inputs)} files cannot share standard output "
                         "(each file numbers its own cues): give --output DIR for one file each")
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
    show_progress = sys.stderr.isatty() and not args.quiet  # never in logs or pipes
    tsv_header = f"file\t{TSV_HEADER}\n"
    files = [path for path, _ in inputs]
    for number, (path, target) in enumerate(
            tqdm(list(zip(files, targets, strict=True)), desc="transcribing", unit="file",
                 disable=len(files) < 2 or not show_progress)):
        try:
            if str(path) == "-":
                from speechrnn.audio import decode_bytes

                waveform = decode_bytes(sys.stdin.buffer.read(), transcriber.sample_rate)
                result = transcriber.transcribe_waveform(waveform, "<stdin>")
            elif args.stream:
                result = _transcribe_streaming(transcriber, path, args.chunk)
            else:
                result = _transcribe_file(transcriber, path, show_progress and len(files) == 1)
        except AudioError as error:
            print(f"speechrnn transcribe: skipped {error}", file=sys.stderr)
            failures += 1
            continue
        text = render(result, args.format, str(path))
        if several and args.format == "tsv":  # one table, a file column first
            text = tsv_header + tsv_rows(result, str(path))
            tsv_header = ""
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

    parser = _command(commands, "transcribe", help="audio files → text with word times")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns; - "
                        "reads one file's bytes from standard input")
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
    parser = _command(commands, "models", help="list the bundled models")
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


def cmd_lm_lexicon(args: argparse.Namespace) -> int:
    from speechrnn.data.manifest import read_manifest
    from speechrnn.fileio import write_atomic

    words = sorted({word for entry in read_manifest(args.manifest) for word in entry.text.split()})
    if not words:
        raise UsageError(f"{args.manifest}: no words in its transcripts")
    write_atomic(args.output, "".join(f"{word}\n" for word in words))
    print(f"wrote {args.output}: {len(words)} words")
    return EXIT_OK


def add_lm(commands) -> None:
    parser = _command(commands, "lm", help="language models")
    verbs = parser.add_subparsers(dest="verb", required=True)
    build = _command(verbs, "build", help="modified Kneser-Ney n-gram LM from text → ARPA")
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
    lexicon = _command(verbs, "lexicon", help="the words of a manifest's transcripts, one per "
                               "line (a closed vocabulary for --lexicon)")
    lexicon.add_argument("manifest", type=Path)
    lexicon.add_argument("output", type=Path)
    lexicon.set_defaults(handler=cmd_lm_lexicon)


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
    parser = _command(commands, "cmvn", help="global feature mean/std of a manifest → JSON "
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
    parser = _command(commands, "export", help="model → ONNX or TorchScript (log-probs from "
                      "features, CMVN included)")
    parser.add_argument("outdir", type=Path, help="folder for the model file, config, "
                        "tokenizer and CMVN")
    parser.add_argument("--model", help="checkpoint folder or bundled model (default: the "
                        "bundled default)")
    parser.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    parser.add_argument("--quantize", choices=["int8"],
                        help="int8 dynamic quantisation of the weights (ONNX)")
    parser.set_defaults(handler=cmd_export)


def cmd_tune_lm(args: argparse.Namespace) -> int:
    from speechrnn.tuning import edge_note, save_tuning, saved_tuning, tune, tuning_setup

    grids = {"alpha": args.alphas, "beta": args.betas, "blank_penalty": args.blank_penalties}
    setup = tuning_setup(args.model, args.lm, args.manifest, args.beam, grids)
    if args.reuse and args.json:
        saved = saved_tuning(args.json, setup)
        if saved is not None:
            print(f"best: {_weights(saved)} (kept {args.json})" + edge_note(saved, grids))
            return EXIT_OK
        if args.json.exists():
            print(f"{args.json} was tuned with other inputs or grid: tuning again",
                  file=sys.stderr)

    def report(point) -> None:
        print(f"alpha {point.alpha:4.2f} beta {point.beta:4.2f} blank penalty "
              f"{point.blank_penalty:4.2f}: WER {100 * point.wer:6.2f}%  "
              f"CER {100 * point.cer:6.2f}%", flush=True)

    jobs = args.jobs or available_cores()
    best, _ = tune(args.model, args.lm, args.manifest, args.beam, grids, jobs, report)
    chosen = {"alpha": best.alpha, "beta": best.beta, "blank_penalty": best.blank_penalty}
    print(f"best: {_weights(chosen)} (dev WER {100 * best.wer:.2f}%, CER "
          f"{100 * best.cer:.2f}%)" + edge_note(chosen, grids))
    if args.json:
        save_tuning(args.json, best, args.beam, str(args.manifest), setup)
    return EXIT_OK


def available_cores() -> int:
    """Cores this process may run on (its affinity where the system has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _weights(weights: dict) -> str:
    return (f"alpha {weights['alpha']} beta {weights['beta']} "
            f"blank penalty {weights['blank_penalty']}")


def add_tune_lm(commands) -> None:
    parser = _command(
        commands, "tune-lm", help="grid-search the LM weight, word bonus and blank penalty on dev",
        description="Grid-search alpha (LM weight), beta (word bonus) and the blank penalty "
        "on a dev manifest by WER; the model's posteriors are computed once. A best setting "
        "at an end of its grid is flagged on the 'best:' line.")
    parser.add_argument("--model", required=True, action="append",
                        help="checkpoint folder; again for an ensemble (posteriors averaged)")
    parser.add_argument("--lm", required=True, help="ARPA file")
    parser.add_argument("--manifest", required=True, type=Path, help="dev manifest")
    parser.add_argument("--beam", type=beam_width, default=16)
    parser.add_argument("--alphas", type=finite_float, nargs="+",
                        default=[0.3, 0.5, 0.7, 0.9, 1.2])
    parser.add_argument("--betas", type=finite_float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--blank-penalties", type=non_negative_float, nargs="+", default=[0.0],
                        help="nats taken off the blank's log-probability")
    parser.add_argument("--jobs", type=count, default=1,
                        help="grid points decoded at once, one process each (0: one per "
                        "available core)")
    parser.add_argument("--json", type=Path, help="write the best weights here: {alpha, beta, "
                        "blank_penalty, dev_wer, ...} (what the recipes read)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep --json if it was tuned with the same model, LM, dev set, "
                        "beam and grids")
    parser.set_defaults(handler=cmd_tune_lm)


def cmd_average(args: argparse.Namespace) -> int:
    from speechrnn.models.checkpoint import average_checkpoints

    average_checkpoints(args.checkpoints, args.output)
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.output}")
    return EXIT_OK


def add_average(commands) -> None:
    parser = _command(commands, "average", help="average the weights of several checkpoints "
                                 "(e.g. the best epochs) into a new one")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--output", "--out", dest="output", type=Path, required=True)
    parser.set_defaults(handler=cmd_average)


def cmd_package(args: argparse.Namespace) -> int:
    from speechrnn.pretrained.package import package

    if args.lm is not None and not args.lm.name.endswith(".arpa.gz"):
        raise UsageError(f"--lm {args.lm}: expected a gzipped ARPA file (.arpa.gz)")
    metrics = {}
    for item in args.metric:
        name, _, value = item.partition("=")
        try:
            metrics[name] = float(value)
        except ValueError:
            raise UsageError(f"--metric expects NAME=NUMBER, got {item!r}") from None
    decoding = {"alpha": args.alpha, "beta": args.beta, "beam": args.beam,
                "blank_penalty": args.blank_penalty, "tuned_on": args.tuned_on}
    package(args.model, args.output, args.lm, decoding, args.description, metrics)
    print(f"packaged {args.model} into {args.output}")
    return EXIT_OK


def add_package(commands) -> None:
    parser = _command(commands, "package", help="a checkpoint as a shippable model: float16 "
                      "weights, its LM and decoding defaults")
    parser.add_argument("model", type=Path, help="checkpoint folder (e.g. exp/best)")
    parser.add_argument("--output", "--out", dest="output", type=Path, required=True)
    parser.add_argument("--lm", type=Path, help="ARPA (.arpa.gz) to ship with the model")
    parser.add_argument("--alpha", type=finite_float, required=True)
    parser.add_argument("--beta", type=finite_float, required=True)
    parser.add_argument("--beam", type=beam_width, default=16)
    parser.add_argument("--blank-penalty", type=non_negative_float, default=0.0,
                        help="nats off the blank's log-probability (speechrnn tune-lm)")
    parser.add_argument("--tuned-on", required=True, help="where alpha/beta were tuned")
    parser.add_argument("--description", required=True)
    parser.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE",
                        help="a measured result to record, e.g. test_wer=0.60 (repeatable)")
    parser.set_defaults(handler=cmd_package)


def cmd_split_words(args: argparse.Namespace) -> int:
    from speechrnn.data.manifest import read_manifest, write_manifest
    from speechrnn.data.segment import split_words

    entries = read_manifest(args.manifest)
    segments, left_out = split_words(entries, args.top_db, args.min_word, args.margin)
    count = write_manifest(args.output, segments)
    for utt_id, reason in left_out.items():
        print(f"skipped {utt_id}: {reason}", file=sys.stderr)
    print(f"wrote {args.output}: {count} words from {len(entries) - len(left_out)} of "
          f"{len(entries)} utterances")
    return EXIT_OK


def add_split_words(commands) -> None:
    parser = _command(commands, "split-words", help="one manifest line per word, cut at the "
                      "silences (isolated-word corpora such as yesno and digit strings)")
    parser.add_argument("manifest", type=Path, help="input manifest (whole utterances)")
    parser.add_argument("output", type=Path, help="output manifest (one line per word)")
    parser.add_argument("--top-db", type=positive_float, default=18.0,
                        help="silence: this many dB below the loudest frame (default 18)")
    parser.add_argument("--min-word", type=positive_float, default=0.08,
                        help="shortest sounding stretch counted as a word, seconds")
    parser.add_argument("--margin", type=non_negative_float, default=0.1,
                        help="silence kept on each side of a word, seconds")
    parser.set_defaults(handler=cmd_split_words)


def cmd_plot(args: argparse.Namespace) -> int:
    from speechrnn import plots

    try:
        if args.what == "curves":
            output = args.output or args.run / "curves.png"
            plots.plot_curves(args.run, output)
        else:
            from speechrnn.data.manifest import read_manifest
            from speechrnn.models.checkpoint import load_checkpoint
            from speechrnn.pretrained import resolve_model

            entries = read_manifest(args.manifest)
            if not 0 <= args.index < len(entries):
                raise UsageError(f"--index {args.index}: {args.manifest} has {len(entries)} "
                                 "utterances")
            output = args.output
            plots.plot_alignment(load_checkpoint(resolve_model(args.model)),
                                 entries[args.index], output)
    except ImportError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {output}")
    return EXIT_OK


def add_plot(commands) -> None:
    parser = _command(commands, "plot", help="figures: training curves, a posteriogram with "
                                 "its forced alignment (needs matplotlib)")
    kinds = parser.add_subparsers(dest="what", required=True)
    curves = _command(kinds, "curves", help="training loss and dev WER/CER of a run folder")
    curves.add_argument("run", type=Path, help="run folder (train.csv, valid.csv)")
    curves.add_argument("--output", "--out", dest="output", type=Path,
                        help="PNG (default RUN/curves.png)")
    alignment = _command(kinds, "alignment", help="one utterance's posteriogram and CTC "
                                 "forced alignment")
    alignment.add_argument("--model", required=True)
    alignment.add_argument("--manifest", type=Path, required=True)
    alignment.add_argument("--index", type=count, default=0)
    alignment.add_argument("--output", "--out", dest="output", type=Path, required=True)
    parser.set_defaults(handler=cmd_plot)


def cmd_summary(args: argparse.Namespace) -> int:
    from speechrnn.models.checkpoint import read_config, resolve

    if args.runs:
        from speechrnn.evaluation import comparison_table

        print(comparison_table(args.results))
        return EXIT_OK
    for folder in args.results:
        path = folder / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            models = summary["decoder"]["model"]
            models = [models] if isinstance(models, str) else models
            parameters = sum(read_config(resolve(Path(m)))["num_parameters"] for m in models)
            low, high = summary["wer_95ci"]
            print(f"{folder.name}: WER {100 * summary['wer']:.2f}% CER {100 * summary['cer']:.2f}% "
                  f"(95% CI {100 * low:.1f}-{100 * high:.1f}) RTF {summary['rtf']:.4f}; "
                  f"{parameters:,} parameters")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as error:
            raise UsageError(f"{path}: not an evaluation summary ({error})") from None
    return EXIT_OK


def add_summary(commands) -> None:
    parser = _command(commands, "summary", help="one line per evaluation folder: WER, CER, "
                                 "interval, RTF, parameters (a recipe's report)")
    parser.add_argument("results", type=Path, nargs="+", help="speechrnn evaluate --output "
                        "folders (with --runs: recipe run folders, exp/<name>)")
    parser.add_argument("--runs", action="store_true",
                        help="a Markdown table of whole recipe runs instead (compare.sh)")
    parser.set_defaults(handler=cmd_summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechrnn", description=__doc__.splitlines()[0],
        epilog="exit codes: 0 ok, 1 some items failed or an output could not be written, "
        "2 bad input or usage, 130 interrupted, 141 output pipe closed",
    )
    from speechrnn import __version__

    parser.add_argument("--version", action="version", version=f"speechrnn {__version__}")
    _add_global_options(parser, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    adders: list[Callable] = [add_prepare, add_train, add_evaluate, add_score, add_transcribe,
                               add_export, add_lm, add_models, add_cmvn, add_tune_lm,
                               add_average, add_package, add_split_words, add_plot,
                               add_summary, add_stages]
    for add in adders:
        add(commands)
    return parser


def _command(group, name: str, **options) -> argparse.ArgumentParser:
    """A subcommand's parser, which also takes the global options (``speechrnn transcribe
    --threads 1 ...`` as well as ``speechrnn --threads 1 transcribe ...``)."""
    shared = argparse.ArgumentParser(add_help=False)
    _add_global_options(shared, argparse.SUPPRESS)
    return group.add_parser(name, parents=[shared], **options)


def _add_global_options(parser: argparse.ArgumentParser, default) -> None:
    """-v/-q/--threads, accepted before or after the subcommand (``default`` SUPPRESS: an
    option not given leaves the value from elsewhere alone)."""
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", default=default,
                          help="speechrnn's own progress and decisions (model, LM, beam, "
                          "devices, segments); never other libraries' debug logs")
    loudness.add_argument("-q", "--quiet", action="store_true", default=default,
                          help="results only: no progress bars, warnings or notes")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=default,
                        help="CPU threads for PyTorch (default: one per core). Several jobs "
                        "at once should share the cores: each with its default slows all "
                        "of them many times over")


def run_stages(arguments: list[str]) -> int:
    """``speechrnn stages ...``: the recipes' stage driver, a bash script shipped in the
    package (its arguments are its own, so argparse does not read them)."""
    script = Path(__file__).with_name("stages.sh")
    return subprocess.run(["bash", str(script), *arguments]).returncode


def add_stages(commands) -> None:
    commands.add_parser("stages", add_help=False,
                        help="the recipes' stage driver (recipes/<corpus>/run.sh calls it; "
                        "speechrnn stages --help)")


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["stages"]:
        return run_stages(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("verbose", False), ("quiet", False), ("threads", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet contradict each other")
    # Other libraries (numba, matplotlib...) stay at warnings: -v is about speechrnn alone.
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("speechrnn").setLevel(
        logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING)
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
