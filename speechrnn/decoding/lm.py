"""Word n-gram language models: the interface the beam search fuses (:class:`NgramLM`), a
pure-Python ARPA reader (gzip too) that implements it, and a modified Kneser-Ney builder
that writes ARPA. KenLM binaries are read by the flashlight backend.

Scores are log10 probabilities, as in ARPA files and KenLM. A context is a tuple of words,
oldest first; ``<s>`` starts a sentence. Unknown words score ``unk_logprob`` (-100, KenLM's
substitute when an ARPA file has no ``<unk>``) unless the model has ``<unk>``.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from speechrnn.fileio import atomic_open, input_problem

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


class LMError(ValueError):
    """A language model file cannot be read; the message names the file and line."""


def _open_text(path: Path):
    path = Path(path)
    problem = input_problem(path)
    if problem:
        raise LMError(f"{path}: {problem}" if problem != "no such file"
                      else f"{path}: no such language model file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


@runtime_checkable
class NgramLM(Protocol):
    """What the beam search fuses: an n-gram back-off model as tables, because its compiled
    search looks n-grams up in hashed arrays built from them (a model that can only answer
    ``score`` queries, such as a KenLM binary, is the flashlight backend's).

    ``ngrams[k]`` maps each k-word tuple to (log10 probability, log10 back-off weight);
    ``ngrams[0]`` is unused. :class:`ArpaLM` (and so :func:`build_lm`) implements it."""

    order: int
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]]
    unk_logprob: float  # log10 score of a word the model lacks, without <unk>
    vocabulary: set[str]
    path: str

    def score(self, context: Sequence[str], word: str) -> float: ...


class ArpaLM:
    """Back-off n-gram model read from an ARPA file.

    ``ngrams[k]`` maps a k-word tuple to (log10 prob, log10 back-off weight).
    """

    def __init__(self, ngrams: list[dict[tuple[str, ...], tuple[float, float]]],
                 unk_logprob: float = -100.0, path: str = ""):
        self.ngrams = ngrams  # index 0 unused; ngrams[1] unigrams ...
        self.order = len(ngrams) - 1
        self.unk_logprob = unk_logprob
        self.path = path
        self.vocabulary = {words[0] for words in ngrams[1]}

    @classmethod
    def load(cls, path: str | Path, unk_logprob: float = -100.0,
             max_order: int | None = None) -> ArpaLM:
        """Read and check an ARPA file (gzip too); ``max_order`` stops after that order's
        section (``1``: the vocabulary alone, cheaply, from a large model)."""
        path = Path(path)
        expected: dict[int, tuple[int, int]] = {}  # order → (count, header line)
        ngrams: list[dict] = [{}]
        section = 0
        try:
            with _open_text(path) as handle:
                for number, raw in enumerate(handle, start=1):
                    line = raw.strip()
                    if not line:
                        continue
                    if line.startswith("\\"):
                        section = cls._section(line, path, number)
                        if max_order is not None and section > max_order:
                            break
                        if section > 0:
                            while len(ngrams) <= section:
                                ngrams.append({})
                        continue
                    if section == 0:
                        if line.startswith("ngram "):
                            order, count = cls._count(line, path, number)
                            expected[order] = (count, number)
                        continue
                    if section < 0:
                        break
                    cls._entry(line, section, ngrams, path, number)
        except UnicodeDecodeError as error:
            raise LMError(f"{path}: not UTF-8 text ({error.reason})") from None
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise LMError(f"{path}: unreadable ({error})") from None
        if len(ngrams) < 2 or not ngrams[1]:
            raise LMError(f"{path}: no \\1-grams: section, not an ARPA file")
        if max_order is not None:
            expected = {k: v for k, v in expected.items() if k <= max_order}
        for order, (count, number) in expected.items():
            if order >= len(ngrams) or len(ngrams[order]) != count:
                found = len(ngrams[order]) if order < len(ngrams) else 0
                raise LMError(f"{path}:{number}: header promises {count} {order}-grams, "
                              f"found {found}")
        for order in range(1, len(ngrams)):
            if order not in expected:
                raise LMError(f"{path}: the header has no 'ngram {order}=' count for its "
                              f"\\{order}-grams: section")
        return cls(ngrams, unk_logprob, str(path))

    @staticmethod
    def _count(line: str, path: Path, number: int) -> tuple[int, int]:
        """(order, count) of a header line ``ngram K=N``."""
        order, _, count = line[6:].partition("=")
        try:
            order_value, count_value = int(order), int(count)
        except ValueError:
            order_value = count_value = -1
        if order_value < 1 or count_value < 0:
            raise LMError(f"{path}:{number}: expected 'ngram K=N' with whole numbers K ≥ 1 and "
                          f"N ≥ 0, got {line!r}")
        return order_value, count_value

    @staticmethod
    def _section(line: str, path: Path, number: int) -> int:
        if line == "\\data\\":
            return 0
        if line == "\\end\\":
            return -1
        if line.endswith("-grams:"):
            try:
                return int(line[1:].split("-")[0])
            except ValueError:
                pass
        raise LMError(f"{path}:{number}: unexpected section header {line!r}")

    @staticmethod
    def _entry(line: str, order: int, ngrams: list[dict], path: Path, number: int) -> None:
        """Add one n-gram line to ``ngrams[order]``; its words must be unigrams already (the
        n-gram tables and the decoder's word ids are built from them)."""
        fields = line.split()
        if len(fields) not in (order + 1, order + 2):
            raise LMError(f"{path}:{number}: expected {order} words, a log10 probability and "
                          "an optional back-off weight")
        try:
            logprob = float(fields[0])
            backoff = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
        except ValueError:
            raise LMError(f"{path}:{number}: not a number in {line!r}") from None
        if not (logprob <= 0 and math.isfinite(backoff)):  # also refuses NaN
            raise LMError(f"{path}:{number}: a log10 probability must be a number ≤ 0 and a "
                          f"back-off weight finite, got {line!r}")
        words = tuple(fields[1 : order + 1])
        if order > 1:
            unknown = [w for w in words if (w,) not in ngrams[1]]
            if unknown:
                raise LMError(f"{path}:{number}: {unknown[0]!r} is not among the 1-grams")
        ngrams[order][words] = (logprob, backoff)

    def score(self, context: Sequence[str], word: str) -> float:
        """log10 P(word | context) with Katz back-off."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        if (word,) not in self.ngrams[1]:
            if (UNK,) not in self.ngrams[1]:
                return self.unk_logprob
            word = UNK
        backoff = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            entry = self.ngrams[len(history) + 1].get(history + (word,))
            if entry is not None:
                return backoff + entry[0]
            history_entry = self.ngrams[len(history)].get(history) if history else None
            if history_entry is not None:
                backoff += history_entry[1]
        return backoff  # unreachable: the unigram always exists by now

    def sentence_score(self, words: Sequence[str], bos: bool = True, eos: bool = True
                       ) -> list[float]:
        """Per-word log10 scores of a sentence (and of ``</s>`` when ``eos``)."""
        context: list[str] = [BOS] if bos else []
        scores = []
        for word in [*words, EOS] if eos else words:
            scores.append(self.score(context, word))
            context.append(word)
        return scores

    def save(self, path: str | Path) -> None:
        write_arpa(path, self.ngrams)


def words_by_spelling(words: Iterable[str], tokenizer) -> dict[str, str]:
    """The tokenizer's spelling of each LM word → that word, so that a lexicon or transcript
    word of another case ("WE") is looked up as the LM's own ("we"). Where several LM words
    share a spelling, the last in sorted order wins, whatever the file's order."""
    return {tokenizer.normalize(word): word for word in sorted(words)}


def lm_words(path: str | Path) -> set[str] | None:
    """The words of an LM file: an ARPA file's unigrams (read up to its 2-grams, so a large
    model costs little), or for a KenLM binary nothing (``None``: its vocabulary is hashed)."""
    try:
        with _open_text(path) as handle:
            first = next((line.strip() for line in handle if line.strip()), "")
    except UnicodeDecodeError:
        return None  # a binary model
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise LMError(f"{path}: unreadable ({error})") from None
    if first != "\\data\\":
        return None
    return ArpaLM.load(path, max_order=1).vocabulary


# -- building -----------------------------------------------------------------------------


def _discounts(counts: Counter) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ from counts of counts (Chen & Goodman)."""
    n = Counter(counts.values())
    n1, n2, n3, n4 = (n.get(i, 0) for i in (1, 2, 3, 4))
    if not (n1 and n2 and n3 and n4):
        return 0.5, 1.0, 1.5  # too little data for the estimate: conventional values
    y = n1 / (n1 + 2 * n2)
    return (max(0.1, 1 - 2 * y * n2 / n1), max(0.1, 2 - 3 * y * n3 / n2),
            max(0.1, 3 - 4 * y * n4 / n3))


def check_lm_settings(order: int, prune: Sequence[int] = ()) -> None:
    """Raise ValueError for an order below 1 or prune counts that build_lm cannot use.

    Separate from build_lm so that the CLI can refuse bad options before reading any text.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    if len(prune) > order:
        raise ValueError(f"{len(prune)} prune counts for a {order}-gram LM (at most one per order)")
    if any(count < 0 for count in prune):
        raise ValueError(f"prune counts must be at least 0, got {' '.join(map(str, prune))}")


def build_lm(sentences: Iterable[Sequence[str]], order: int = 3,
             prune: Sequence[int] = ()) -> ArpaLM:
    """Interpolated modified Kneser-Ney n-gram model (Chen & Goodman 1998).

    ``prune[k-1]`` drops k-grams (k ≥ 2) seen at most that many times, keeping those that
    prefix a kept longer n-gram. Back-off weights are then computed from the kept
    probabilities, so every history's distribution sums to 1 whatever was pruned.
    """
    check_lm_settings(order, prune)
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    vocabulary = {EOS, UNK}
    for words in sentences:
        padded = [BOS, *words, EOS]
        vocabulary.update(words)
        for k in range(1, order + 1):
            for i in range(len(padded) - k + 1):
                gram = tuple(padded[i : i + k])
                if gram != (BOS,):
                    raw[k][gram] += 1
    # Lower orders use continuation counts (distinct left neighbours), except n-grams that
    # start with <s>: nothing precedes them, so they keep their raw counts.
    adjusted: list[Counter] = [Counter() for _ in range(order + 1)]
    adjusted[order] = raw[order]
    for k in range(1, order):
        left = Counter(gram[1:] for gram in raw[k + 1])
        for gram, count in raw[k].items():
            adjusted[k][gram] = count if gram[0] == BOS else left[gram]
    probabilities: list[dict] = [{} for _ in range(order + 1)]
    vocab_size = len(vocabulary)
    for k in range(1, order + 1):
        d1, d2, d3 = _discounts(adjusted[k])
        totals: dict = defaultdict(float)
        kinds: dict = defaultdict(lambda: [0, 0, 0])
        for gram, count in adjusted[k].items():
            totals[gram[:-1]] += count
            kinds[gram[:-1]][min(count, 3) - 1] += 1
        gammas = {history: (d1 * n1 + d2 * n2 + d3 * n3) / totals[history]
                  for history, (n1, n2, n3) in kinds.items()}
        for gram, count in adjusted[k].items():
            history = gram[:-1]
            lower = 1.0 / vocab_size if k == 1 else probabilities[k - 1][gram[1:]]
            discount = (d1, d2, d3)[min(count, 3) - 1]
            probabilities[k][gram] = (count - discount) / totals[history] + \
                gammas[history] * lower
        if k == 1:  # words never seen (<unk>) get the uniform share of the held-out mass
            for word in vocabulary - {g[0] for g in adjusted[1]}:
                probabilities[1][(word,)] = gammas[()] / vocab_size
    for k in range(order, 1, -1):
        threshold = prune[k - 1] if k - 1 < len(prune) else 0
        needed = {gram[:-1] for gram in probabilities[k + 1]} if k < order else set()
        if threshold:
            probabilities[k] = {g: p for g, p in probabilities[k].items()
                                if raw[k][g] > threshold or g in needed}
    return _to_arpa_model(probabilities, order)


def _to_arpa_model(probabilities: list[dict], order: int) -> ArpaLM:
    """Log10 probabilities plus back-off weights that renormalise every history."""
    ngrams: list[dict] = [{}] + [{} for _ in range(order)]
    for k in range(1, order + 1):
        for gram, p in probabilities[k].items():
            ngrams[k][gram] = (math.log10(p), 0.0)
    ngrams[1][(BOS,)] = (-99.0, 0.0)
    model = ArpaLM(ngrams)
    for k in range(1, order):  # histories of length k; shorter ones are final by now
        seen: dict = defaultdict(list)
        for gram in ngrams[k + 1]:
            seen[gram[:-1]].append(gram[-1])
        for history, words in seen.items():
            kept = sum(10 ** ngrams[k + 1][history + (w,)][0] for w in words)
            lower = sum(10 ** model.score(history[1:], w) for w in words)
            weight = max(1e-12, 1.0 - kept) / max(1e-12, 1.0 - lower)
            ngrams[k][history] = (ngrams[k][history][0], math.log10(weight))
    return model


def write_arpa(path: str | Path, ngrams: list[dict]) -> None:
    """Write n-gram tables as an ARPA file (gzip when the name ends in .gz)."""
    path = Path(path)
    with atomic_open(path, binary=True) as raw, (
            gzip.open(raw, "wt", encoding="utf-8") if path.suffix == ".gz"
            else io.TextIOWrapper(raw, encoding="utf-8")) as handle:
        handle.write("\n\\data\\\n")
        for k in range(1, len(ngrams)):
            handle.write(f"ngram {k}={len(ngrams[k])}\n")
        for k in range(1, len(ngrams)):
            handle.write(f"\n\\{k}-grams:\n")
            for gram, (logprob, backoff) in sorted(ngrams[k].items()):
                words = " ".join(gram)
                if k < len(ngrams) - 1:
                    handle.write(f"{logprob:.6f}\t{words}\t{backoff:.6f}\n")
                else:
                    handle.write(f"{logprob:.6f}\t{words}\n")
        handle.write("\n\\end\\\n")
