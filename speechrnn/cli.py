"""The ``speechrnn`` command: composes library calls; no logic a library user would miss.

Exit codes (all commands): 0 success; 1 a batch finished but some items failed (each was
reported); 2 bad usage or unusable input (a clear message naming the file, no traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_PARTIAL, EXIT_INPUT = 0, 1, 2


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
    from speechrnn.data.prepare import prepare_corpus

    options = {"download_corpus": args.download} if args.download else {}
    for name in ("test_speaker", "dev_speaker", "seed", "dev_fraction", "audio_root",
                 "subsets", "train_passes"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    ensure_writable_dir(args.outdir)
    try:
        report = prepare_corpus(args.corpus, args.src, args.outdir, **options)
    except TypeError as error:  # an option the corpus does not take
        raise UsageError(f"option not valid for {args.corpus}: {error}") from None
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
    parser.add_argument("--train-passes", type=int, help="fsdd: groupings per train speaker")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dev-fraction", type=float,
                        help="kaldi-dir/speechocean762/an4-mini: share of train speakers for dev")
    parser.add_argument("--audio-root", type=Path,
                        help="kaldi-dir: folder relative wav.scp paths start from")
    parser.add_argument("--subsets", nargs="+", help="librispeech: subsets to prepare")
    parser.set_defaults(handler=cmd_prepare)


def cmd_train(args: argparse.Namespace) -> int:
    from speechrnn.training.config import load_config
    from speechrnn.training.trainer import Trainer

    try:
        config = load_config(args.config, args.set or [])
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.detect_anomaly:
        config.detect_anomaly = True
    ensure_writable_dir(args.outdir)
    try:
        summary = Trainer(config, args.outdir, resume=args.resume).fit()
    except ValueError as error:
        raise UsageError(str(error)) from None
    best = [h for h in summary["history"] if "wer" in h]
    if best:
        top = min(best, key=lambda h: h["wer"])
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
    parser.add_argument("--detect-anomaly", action="store_true",
                        help="torch autograd anomaly detection (slow; for debugging NaNs)")
    parser.set_defaults(handler=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechrnn", description=__doc__.splitlines()[0],
        epilog="exit codes: 0 ok, 1 some items failed, 2 bad input or usage, 130 interrupted",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    adders: list[Callable] = [add_prepare, add_train]
    for add in adders:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from speechrnn.audio import AudioError
    from speechrnn.data.manifest import ManifestError
    from speechrnn.data.prepare import PrepareError
    from speechrnn.training.checkpoint import CheckpointError

    known = (UsageError, AudioError, ManifestError, PrepareError, CheckpointError,
             FileNotFoundError)
    try:
        return args.handler(args)
    except known as error:
        print(f"speechrnn {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"speechrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
