"""Scoring: WER/CER/SER on jiwer's alignment, reports, trn I/O and significance tests.

References and hypotheses are dicts utterance id → text. Both sides go through the same
:func:`speechrnn.text.normalize` before alignment. A reference without a hypothesis is scored
as all deletions (as NIST sclite does) and listed as missing; a hypothesis without a
reference is listed as extra and left out of the totals. Utterances whose reference is empty
are counted apart (their WER is undefined) and their hypothesis words are reported as
insertions separately. A rate without a denominator is None (``null`` in JSON), never NaN.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from speechrnn.fileio import OutputFiles, input_problem
from speechrnn.text import normalize


class ScoringError(ValueError):
    """Unreadable reference/hypothesis input; the message names the file and line."""


def error_rates(references: list[str], hypotheses: list[str], case: str = "lower"
                ) -> tuple[float, float]:
    """Corpus (WER, CER) over non-empty normalised references."""
    pairs = [(normalize(r, case), normalize(h, case))
             for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan"), float("nan")
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return jiwer.wer(refs, hyps), jiwer.cer(refs, hyps)


@dataclass
class Counts:
    """Edit counts against ``ref`` reference units (words or characters)."""

    ref: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        return self.errors / self.ref if self.ref else float("nan")

    def add(self, other: Counts) -> None:
        self.ref += other.ref
        self.sub += other.sub
        self.dele += other.dele
        self.ins += other.ins


@dataclass
class Utterance:
    id: str
    speaker: str
    reference: str
    hypothesis: str
    words: Counts
    chars: Counts
    alignment: list[tuple[str, str, str]]  # (ref word or "", hyp word or "", C|S|D|I)


@dataclass
class Report:
    utterances: list[Utterance]
    missing: list[str] = field(default_factory=list)  # in references, no hypothesis
    extra: list[str] = field(default_factory=list)  # hypothesis without reference
    empty_references: list[str] = field(default_factory=list)
    empty_reference_insertions: int = 0

    def totals(self, unit: str = "words") -> Counts:
        total = Counts()
        for utterance in self.utterances:
            total.add(getattr(utterance, unit))
        return total

    @property
    def wer(self) -> float:
        return self.totals("words").rate

    @property
    def cer(self) -> float:
        return self.totals("chars").rate

    @property
    def ser(self) -> float:
        if not self.utterances:
            return float("nan")
        wrong = sum(1 for u in self.utterances if u.words.errors)
        return wrong / len(self.utterances)

    def per_speaker(self) -> dict[str, Counts]:
        table: dict[str, Counts] = defaultdict(Counts)
        for utterance in self.utterances:
            table[utterance.speaker].add(utterance.words)
        return dict(sorted(table.items()))

    def confusions(self, top: int = 10) -> list[tuple[str, str, int]]:
        pairs = Counter((r, h) for u in self.utterances for r, h, op in u.alignment
                        if op == "S")
        return [(r, h, n) for (r, h), n in pairs.most_common(top)]

    def bootstrap_interval(self, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
        """95% confidence interval of the WER by resampling utterances (Bisani & Ney 2004)."""
        return _bootstrap_ci([(u.words.errors, u.words.ref) for u in self.utterances],
                             samples, seed)

    def summary(self) -> dict:
        """Totals as JSON-ready values: a rate without a denominator is None, never NaN."""
        words, chars = self.totals("words"), self.totals("chars")
        low, high = self.bootstrap_interval()
        return {
            "utterances": len(self.utterances), "ref_words": words.ref,
            "substitutions": words.sub, "deletions": words.dele, "insertions": words.ins,
            "wer": _number(words.rate), "wer_95ci": [_number(low), _number(high)],
            "cer": _number(chars.rate), "ser": _number(self.ser),
            "missing": self.missing, "extra": self.extra,
            "empty_references": self.empty_references,
            "empty_reference_insertions": self.empty_reference_insertions,
        }

    def format(self, alignments: bool = False, top: int = 10) -> str:
        """Human-readable report: totals, per speaker, confusions, optional alignments."""
        words, chars = self.totals("words"), self.totals("chars")
        low, high = self.bootstrap_interval()
        lines = [
            f"utterances {len(self.utterances)}  reference words {words.ref}",
            f"WER {_percent(words.rate)}  (S {words.sub}  D {words.dele}  I {words.ins})  "
            f"95% CI [{_percent(low, '')}, {_percent(high, '')}]",
            f"CER {_percent(chars.rate)}  SER {_percent(self.ser)}",
        ]
        if self.missing:
            lines.append(f"missing hypotheses, scored as deletions ({len(self.missing)}): "
                         f"{' '.join(self.missing)}")
        if self.extra:
            lines.append(f"hypotheses without reference ({len(self.extra)}): "
                         f"{' '.join(self.extra)}")
        if self.empty_references:
            lines.append(f"empty references, scored apart ({len(self.empty_references)}): "
                         f"{' '.join(self.empty_references)}; "
                         f"{self.empty_reference_insertions} inserted words")
        lines += ["", f"{'speaker':16s} {'words':>7s} {'WER%':>7s} {'S':>5s} {'D':>5s} {'I':>5s}"]
        for speaker, counts in self.per_speaker().items():
            lines.append(f"{speaker or '-':16s} {counts.ref:7d} {_percent(counts.rate, ''):>7s} "
                         f"{counts.sub:5d} {counts.dele:5d} {counts.ins:5d}")
        if self.confusions(top):
            lines += ["", "most frequent substitutions (reference → hypothesis):"]
            lines += [f"  {n:4d}  {r} → {h}" for r, h, n in self.confusions(top)]
        if alignments:
            lines.append("")
            for utterance in self.utterances:
                lines += _alignment_lines(utterance)
        return "\n".join(lines)


def _percent(value: float, sign: str = "%") -> str:
    """A rate as a percentage with two decimals; "n/a" without a denominator."""
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}{sign}"


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _alignment_lines(utterance: Utterance) -> list[str]:
    refs, hyps, marks = [], [], []
    for ref, hyp, op in utterance.alignment:
        width = max(len(ref), len(hyp), 1)
        refs.append((ref or "*" * width).ljust(width))
        hyps.append((hyp or "*" * width).ljust(width))
        marks.append(("" if op == "C" else op).ljust(width))
    return [f"id: {utterance.id}", "REF: " + " ".join(refs), "HYP: " + " ".join(hyps),
            "     " + " ".join(marks).rstrip(), ""]


def _counts(output) -> Counts:
    return Counts(output.hits + output.substitutions + output.deletions,
                  output.substitutions, output.deletions, output.insertions)


def _word_alignment(output, ref: list[str], hyp: list[str]) -> list[tuple[str, str, str]]:
    pairs = []
    codes = {"equal": "C", "substitute": "S", "delete": "D", "insert": "I"}
    for chunk in output.alignments[0]:
        code = codes[chunk.type]
        ref_part = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_part = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        for i in range(max(len(ref_part), len(hyp_part))):
            pairs.append((ref_part[i] if i < len(ref_part) else "",
                          hyp_part[i] if i < len(hyp_part) else "", code))
    return pairs


def sclite_alignment(ref: list[str], hyp: list[str]) -> list[tuple[str, str, str]]:
    """Word alignment with NIST sclite's default costs (substitution 4, insertion and
    deletion 3), which can split errors differently from jiwer's unit costs.

    Hand-written because jiwer and rapidfuzz only align with unit costs; the total error
    count it yields is sclite's, so reports in this mode match sclite's S/D/I exactly.
    """
    rows, cols = len(ref) + 1, len(hyp) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(1, rows):
        cost[i][0] = 3 * i
    for j in range(1, cols):
        cost[0][j] = 3 * j
    for i in range(1, rows):
        for j in range(1, cols):
            diagonal = cost[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 4)
            cost[i][j] = min(diagonal, cost[i - 1][j] + 3, cost[i][j - 1] + 3)
    pairs = []
    i, j = len(ref), len(hyp)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 4):
            pairs.append((ref[i - 1], hyp[j - 1], "C" if ref[i - 1] == hyp[j - 1] else "S"))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 3:
            pairs.append((ref[i - 1], "", "D"))
            i -= 1
        else:
            pairs.append(("", hyp[j - 1], "I"))
            j -= 1
    return pairs[::-1]


def _alignment_counts(pairs: list[tuple[str, str, str]]) -> Counts:
    ops = Counter(op for _, _, op in pairs)
    return Counts(ops["C"] + ops["S"] + ops["D"], ops["S"], ops["D"], ops["I"])


def score(references: dict[str, str], hypotheses: dict[str, str],
          speakers: dict[str, str] | None = None, case: str = "lower",
          alignment: str = "jiwer") -> Report:
    """Align every utterance and build the report. ``alignment`` is "jiwer" (unit costs) or
    "sclite" (sclite's weighted costs, for S/D/I totals identical to NIST sclite's)."""
    if alignment not in ("jiwer", "sclite"):
        raise ValueError(f"alignment must be jiwer or sclite, not {alignment!r}")
    if not references:
        raise ScoringError("no reference utterances to score against")
    report = Report([])
    report.missing = sorted(set(references) - set(hypotheses))
    report.extra = sorted(set(hypotheses) - set(references))
    for utt_id in sorted(references):
        ref = normalize(references[utt_id], case)
        hyp = normalize(hypotheses.get(utt_id, ""), case)
        if not ref:
            report.empty_references.append(utt_id)
            report.empty_reference_insertions += len(hyp.split())
            continue
        chars = jiwer.process_characters(ref, hyp)
        if alignment == "sclite":
            pairs = sclite_alignment(ref.split(), hyp.split())
            word_counts = _alignment_counts(pairs)
        else:
            words = jiwer.process_words(ref, hyp)
            pairs = _word_alignment(words, ref.split(), hyp.split())
            word_counts = _counts(words)
        speaker = (speakers or {}).get(utt_id, _speaker_from_id(utt_id))
        report.utterances.append(Utterance(utt_id, speaker, ref, hyp, word_counts,
                                           _counts(chars), pairs))
    return report


def _speaker_from_id(utt_id: str) -> str:
    """sclite's spu_id convention: the speaker is the id's part before the first - or _."""
    match = re.match(r"([^-_]+)[-_]", utt_id)
    return match.group(1) if match else ""


def _bootstrap_ci(items: list[tuple[int, int]], samples: int, seed: int) -> tuple[float, float]:
    if not items:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    rates = []
    for _ in range(samples):
        picked = [items[rng.randrange(len(items))] for _ in items]
        errors, total = sum(e for e, _ in picked), sum(n for _, n in picked)
        rates.append(errors / total if total else 0.0)
    rates.sort()
    return rates[int(0.025 * samples)], rates[min(samples - 1, int(0.975 * samples))]


@dataclass
class Comparison:
    wer_a: float
    wer_b: float
    bootstrap_p: float  # probability that B is not better than A (paired bootstrap)
    sign_p: float  # two-sided sign test on per-utterance error counts
    a_better: int
    b_better: int


def compare(references: dict[str, str], hypotheses_a: dict[str, str],
            hypotheses_b: dict[str, str], samples: int = 1000, seed: int = 0) -> Comparison:
    """Paired significance of system B against system A on the same utterances (a missing
    hypothesis counts as all deletions on its side). ScoringError when the two systems share
    no utterance of the references: there is nothing to pair."""
    if not set(references) & set(hypotheses_a) & set(hypotheses_b):
        raise ScoringError("the two hypothesis sets share no utterance id with each other "
                           "and the references; nothing to compare")
    report_a, report_b = score(references, hypotheses_a), score(references, hypotheses_b)
    by_id_b = {u.id: u for u in report_b.utterances}
    pairs = [(u.words.errors, by_id_b[u.id].words.errors, u.words.ref)
             for u in report_a.utterances if u.id in by_id_b]
    rng = random.Random(seed)
    not_better = 0
    for _ in range(samples):
        picked = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        if sum(b for _, b, _ in picked) >= sum(a for a, _, _ in picked):
            not_better += 1
    a_better = sum(1 for a, b, _ in pairs if a < b)
    b_better = sum(1 for a, b, _ in pairs if b < a)
    return Comparison(report_a.wer, report_b.wer, not_better / samples,
                      _sign_test(a_better, b_better), a_better, b_better)


def _sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test (ties dropped)."""
    from math import comb

    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# -- file formats --------------------------------------------------------------------------

_TRN_LINE = re.compile(r"^(.*)\(([^()]*)\)\s*$")


def read_trn(path: str | Path) -> dict[str, str]:
    """sclite trn: ``text (utterance-id)`` per line."""
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        match = _TRN_LINE.match(line)
        if not match:
            raise ScoringError(f"{path}:{number}: not a trn line (text (id)): {line[:60]!r}")
        utt_id = match.group(2).strip()
        if utt_id in texts:
            raise ScoringError(f"{path}:{number}: duplicate id {utt_id!r}")
        texts[utt_id] = match.group(1).strip()
    return texts


def trn_id_problem(utt_id: str) -> str | None:
    """Why ``utt_id`` cannot stand in a trn file (ours and sclite's read the id between the
    line's last parentheses, up to whitespace), or None."""
    if not utt_id:
        return "an empty id"
    if any(ch in "()" or ch.isspace() for ch in utt_id):
        return f"id {utt_id!r} holds a parenthesis or whitespace, which a trn file cannot keep"
    return None


def check_trn_ids(ids: Iterable[str], where: str) -> None:
    """ScoringError naming ``where`` for the first id a trn file could not hold."""
    for utt_id in ids:
        problem = trn_id_problem(utt_id)
        if problem:
            raise ScoringError(f"{where}: {problem}; rename it (letters, digits, - _ . only "
                               "are safe)")


def trn_lines(texts: dict[str, str]) -> str:
    """The trn text of ``texts``, one line each; ids are checked, text whitespace (newlines
    included) is collapsed so that every line reads back as written."""
    check_trn_ids(texts, "trn output")
    return "".join(f"{' '.join(text.split())} ({utt_id})\n" for utt_id, text in texts.items())


def write_trn(path: str | Path, texts: dict[str, str], out: OutputFiles | None = None) -> None:
    """Write ``texts`` as a trn file, all or nothing (into ``out``'s set when given)."""
    if out is not None:
        out.write(path, trn_lines(texts))
        return
    with OutputFiles() as files:
        files.write(path, trn_lines(texts))


def read_jsonl_texts(path: str | Path, field_name: str = "text") -> dict[str, str]:
    """JSON lines with ``text`` and an ``id``: manifests, ``evaluate``'s hyp.jsonl and
    ``transcribe --format json`` all qualify. A line without ``id`` takes the name of its
    ``file`` or ``audio`` without the suffix (as ``transcribe --output`` names its files)."""
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        try:
            item = json.loads(line)
            text = item[field_name]
            utt_id = item["id"] if "id" in item else Path(item.get("file") or item["audio"]).stem
            if not isinstance(utt_id, str) or not isinstance(text, str):
                raise TypeError("id and text must be strings")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ScoringError(f"{path}:{number}: expected JSON with {field_name} and an id "
                               f"(or a file or audio path) ({error})") from None
        if utt_id in texts:
            raise ScoringError(f"{path}:{number}: duplicate id {utt_id!r}")
        texts[utt_id] = text
    return texts


def read_texts(path: str | Path) -> dict[str, str]:
    """trn or JSON lines, told apart by the first non-empty line."""
    for _, line in _lines(path):
        return read_jsonl_texts(path) if line.lstrip().startswith("{") else read_trn(path)
    return {}


def _lines(path: str | Path) -> Iterable[tuple[int, str]]:
    problem = input_problem(path)
    if problem:
        raise ScoringError(f"{path}: {problem}")
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ScoringError(f"{path}: cannot read ({error.strerror})") from None
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ScoringError(f"{path}:{number}: not UTF-8 (byte {error.start}); "
                               "convert the file to UTF-8") from None
        if line.strip():
            yield number, line
