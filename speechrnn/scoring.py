"""Word and character error rates on jiwer's alignment, with shared text normalisation."""

from __future__ import annotations

import jiwer

from speechrnn.text import normalize


def error_rates(references: list[str], hypotheses: list[str], case: str = "lower"
                ) -> tuple[float, float]:
    """Corpus (WER, CER) over non-empty normalised references."""
    pairs = [(normalize(r, case), normalize(h, case)) for r, h in zip(references, hypotheses,
                                                                       strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan"), float("nan")
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return jiwer.wer(refs, hyps), jiwer.cer(refs, hyps)
