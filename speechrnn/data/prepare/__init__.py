"""Corpus preparers: a corpus in its official layout → train/dev/test JSON-lines manifests.

``prepare_corpus(name, src, outdir, **options)`` dispatches to one module per corpus. Every
preparer reports and skips unusable items (unreadable audio, undecodable text) instead of
failing, and returns a :class:`PrepareReport`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from speechrnn.lazy import lazy_exports

if TYPE_CHECKING:
    from speechrnn.data.prepare.common import PrepareReport


def _preparers() -> dict:
    from speechrnn.data.prepare import an4, folder, fsdd, kaldi_dir, librispeech, yesno

    return {
        "yesno": yesno.prepare,
        "fsdd": fsdd.prepare,
        "speechocean762": kaldi_dir.prepare_speechocean762,
        "kaldi-dir": kaldi_dir.prepare,
        "an4-mini": an4.prepare,
        "librispeech": librispeech.prepare,
        "folder": folder.prepare,
    }


def corpus_options(name: str) -> list[str]:
    """The options corpus ``name``'s preparer takes: the keyword parameters it declares
    (``download_corpus`` for the ones that can fetch their corpus)."""
    from speechrnn.data.prepare.common import PrepareError

    if name not in _preparers():
        raise PrepareError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
    parameters = inspect.signature(_preparers()[name]).parameters
    return [n for n in parameters if n not in ("src", "outdir")]


def prepare_corpus(name: str, src: str | Path, outdir: str | Path, **options) -> PrepareReport:
    """Prepare corpus ``name`` found at ``src`` (downloaded there when ``download=True``);
    an option the corpus does not declare is refused (PrepareError) before any work."""
    from speechrnn.data.prepare.common import PrepareError

    accepted = corpus_options(name)
    unknown = [option for option in options if option not in accepted]
    if unknown:
        shown = ", ".join(accepted) or "none"
        raise PrepareError(f"{name} takes no option {', '.join(unknown)} (its options: "
                           f"{shown})")
    return _preparers()[name](Path(src), Path(outdir), **options)


CORPORA = ("yesno", "fsdd", "speechocean762", "kaldi-dir", "an4-mini", "librispeech", "folder")

__all__ = ["CORPORA", "PrepareError", "PrepareReport", "corpus_options", "prepare_corpus"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(["PrepareError", "PrepareReport"],
                                                   "speechrnn.data.prepare.common"))
