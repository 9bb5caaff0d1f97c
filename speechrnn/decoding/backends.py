"""An optional decoder behind the same ``decode(log_probs, length) -> list[Hypothesis]``
interface: torchaudio's flashlight ``ctc_decoder`` (CPU, needs ``flashlight-text``; KenLM
ARPA or binary LMs)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from speechrnn.decoding.hypothesis import Hypothesis, Word
from speechrnn.decoding.lm import lm_words, words_by_spelling

SEPARATOR = "|"  # flashlight's word separator stands in for the space token


def _token_names(tokenizer) -> list[str]:
    return [SEPARATOR if s == " " else s for s in tokenizer.symbols]


def _lm_word_of(lm: str | Path | None, tokenizer) -> Callable[[str, str], str]:
    """(word, spelling) → the LM's word of that spelling, so a lexicon in another case than
    the LM ("WE" against the LM's "we") is not scored as unknown words by KenLM."""
    if not lm:
        return lambda word, spelling: word
    known = lm_words(lm)
    if known is not None:  # an ARPA file: map every spelling to its LM word
        by_spelling = words_by_spelling(known, tokenizer)
        return lambda word, spelling: by_spelling.get(spelling, word)
    try:
        import kenlm
    except ImportError:
        return lambda word, spelling: word
    model = kenlm.Model(str(lm))  # a binary (memory-mapped): look each form up in it
    return lambda word, spelling: next(
        (form for form in (word, spelling, spelling.upper()) if form in model), word)


class FlashlightDecoder:
    """Lexicon-constrained beam search of flashlight-text with a KenLM language model."""

    def __init__(self, tokenizer, lm: str | Path | None = None,
                 lexicon: Sequence[str] | None = None, beam: int = 16, alpha: float = 0.5,
                 beta: float = 1.0, nbest: int = 1, frame_shift: float = 0.03):
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as error:  # flashlight-text missing
            raise ImportError("the flashlight backend needs `pip install flashlight-text`") \
                from error
        self.tokenizer = tokenizer
        self.frame_shift = frame_shift
        tokens = _token_names(tokenizer)
        self._folder = tempfile.TemporaryDirectory()
        lexicon_path = None
        if lexicon is not None:
            lexicon_path = Path(self._folder.name) / "lexicon.txt"
            lm_word = _lm_word_of(lm, tokenizer)
            lines = {}
            for word in lexicon:
                spelling = tokenizer.normalize(word)
                if spelling and all(ch in tokenizer.symbols and ch != " " for ch in spelling):
                    name = lm_word(word, spelling)
                    lines.setdefault(name, f"{name} {' '.join(spelling)} {SEPARATOR}\n")
            lexicon_path.write_text("".join(lines.values()))
        self._decoder = ctc_decoder(
            lexicon=str(lexicon_path) if lexicon_path else None, tokens=tokens,
            lm=str(lm) if lm else None, nbest=nbest, beam_size=beam, lm_weight=alpha,
            word_score=beta, blank_token=tokens[0], sil_token=SEPARATOR,
            unk_word="<unk>")

    def decode(self, log_probs: torch.Tensor, length: int | None = None) -> list[Hypothesis]:
        log_probs = torch.as_tensor(log_probs).float().cpu()
        length = log_probs.shape[0] if length is None else int(length)
        results = self._decoder(log_probs[None, :length].contiguous(),
                                torch.tensor([length]))[0]
        return [self._hypothesis(result, log_probs) for result in results]

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor
                     ) -> list[list[Hypothesis]]:
        return [self.decode(log_probs[i], lengths[i]) for i in range(log_probs.shape[0])]

    def _hypothesis(self, result, log_probs: torch.Tensor) -> Hypothesis:
        if not result.words:  # only silence or unknown words
            return Hypothesis("", float(result.score))
        tokens = [int(t) for t in result.tokens]
        times = [int(t) for t in result.timesteps]
        keep = [i for i, t in enumerate(tokens) if t != 0]
        ids = [tokens[i] for i in keep]
        frames = [times[i] for i in keep]
        while ids and ids[0] == self.tokenizer.space_id:  # flashlight brackets with silence
            ids, frames = ids[1:], frames[1:]
        words = []
        # flashlight's token path can run past its word list (a trailing partial word):
        # the words are its lexicon words, timed by the token groups they start with
        groups = self.tokenizer.group_words(ids)
        for text, group in zip(result.words, groups, strict=False):
            first, last = frames[group[0]], frames[group[-1]]
            confidence = float(sum(log_probs[frames[i], ids[i]].exp() for i in group)
                               / len(group))
            words.append(Word(self.tokenizer.normalize(text), first * self.frame_shift,
                              (last + 1) * self.frame_shift, confidence))
        return Hypothesis(self.tokenizer.normalize(" ".join(result.words)), float(result.score),
                          ids, words)
