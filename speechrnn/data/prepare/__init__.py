"""Corpus preparers: a corpus in its official layout → train/dev/test JSON-lines manifests.

``prepare_corpus(name, src, outdir, **options)`` dispatches to one module per corpus. Every
preparer reports and skips unusable items (unreadable audio, undecodable text) instead of
failing, and returns a :class:`PrepareReport`.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from speechrnn.lazy import lazy_exports

if TYPE_CHECKING:
    from speechrnn.data.prepare.common import PrepareReport


# corpus → (module of this package, its preparer function)
PREPARERS = {
    "yesno": ("yesno", "prepare"),
    "fsdd": ("fsdd", "prepare"),
    "speechocean762": ("kaldi_dir", "prepare_speechocean762"),
    "kaldi-dir": ("kaldi_dir", "prepare"),
    "an4-mini": ("an4", "prepare"),
    "librispeech": ("librispeech", "prepare"),
    "folder": ("folder", "prepare"),
}
CORPORA = tuple(PREPARERS)


@functools.cache  # --help builds every corpus's parser: each source file is parsed once
def _definition(name: str) -> tuple[ast.Module, ast.FunctionDef]:
    """The preparer's module and function, read as source: what a corpus declares (its
    options and layout) is known without importing torch, for ``--help``."""
    if name not in PREPARERS:
        from speechrnn.data.prepare.common import PrepareError

        raise PrepareError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
    module, function = PREPARERS[name]
    tree = ast.parse(Path(__file__).with_name(f"{module}.py").read_text(encoding="utf-8"))
    found = [node for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name == function]
    return tree, found[0]


def corpus_options(name: str) -> list[str]:
    """The options corpus ``name``'s preparer takes: the keyword parameters it declares
    (``download_corpus`` for the ones that can fetch their corpus)."""
    _, function = _definition(name)
    arguments = function.args.args + function.args.kwonlyargs
    return [a.arg for a in arguments if a.arg not in ("src", "outdir")]


def corpus_description(name: str) -> str:
    """What corpus ``name``'s preparer reads and how it splits train/dev/test: its module's
    documentation (and its function's, where one module serves several corpora)."""
    tree, function = _definition(name)
    parts = [ast.get_docstring(tree) or ""]
    if function.name != "prepare":
        parts.append(ast.get_docstring(function) or "")
    return "\n\n".join(part for part in parts if part)


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
    module, function = PREPARERS[name]
    preparer = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return preparer(Path(src), Path(outdir), **options)



__all__ = ["CORPORA", "PrepareError", "PrepareReport", "corpus_options", "prepare_corpus"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(["PrepareError", "PrepareReport"],
                                                   "speechrnn.data.prepare.common"))
