"""Corpus preparers: a corpus in its official layout → train/dev/test JSON-lines manifests.

``prepare_corpus(name, src, outdir, **options)`` dispatches to one module per corpus. Every
preparer reports and skips unusable items (unreadable audio, undecodable text) instead of
failing, and returns a :class:`PrepareReport`.
"""

from __future__ import annotations

from pathlib import Path

from speechrnn.data.prepare.common import PrepareError, PrepareReport


def prepare_corpus(name: str, src: str | Path, outdir: str | Path, **options) -> PrepareReport:
    """Prepare corpus ``name`` found at ``src`` (downloaded there when ``download=True``)."""
    from speechrnn.data.prepare import an4, folder, fsdd, kaldi_dir, librispeech, yesno

    preparers = {
        "yesno": yesno.prepare,
        "fsdd": fsdd.prepare,
        "speechocean762": kaldi_dir.prepare_speechocean762,
        "kaldi-dir": kaldi_dir.prepare,
        "an4-mini": an4.prepare,
        "librispeech": librispeech.prepare,
        "folder": folder.prepare,
    }
    if name not in preparers:
        raise PrepareError(f"unknown corpus {name!r}; choose from {', '.join(preparers)}")
    return preparers[name](Path(src), Path(outdir), **options)


CORPORA = ("yesno", "fsdd", "speechocean762", "kaldi-dir", "an4-mini", "librispeech", "folder")

__all__ = ["CORPORA", "PrepareError", "PrepareReport", "prepare_corpus"]
