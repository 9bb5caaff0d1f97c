"""Greedy (best path) CTC decoding, batched on tensors."""

from __future__ import annotations

import math

import torch

from speechrnn.decoding.checks import check_blank_penalty, checked_log_probs
from speechrnn.decoding.hypothesis import Hypothesis, Word


def greedy_ids(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """(B, T, V) log-probs → per utterance the collapsed token ids (repeats merged, blanks
    dropped), computed with one argmax and one comparison over the batch."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    previous = torch.nn.functional.pad(best, (1, 0), value=-1)[:, :-1]
    keep = (best != previous) & (best != 0)
    steps = torch.arange(best.shape[1], device=best.device)
    keep &= steps[None, :] < lengths.to(best.device)[:, None]
    best, keep = best.cpu(), keep.cpu()
    return [best[row][keep[row]].tolist() for row in range(best.shape[0])]


class GreedyDecoder:
    """Best-path decoding with word times and confidences (mean max-probability per word).
    ``blank_penalty`` (nats) is taken off the blank's log-probability before the best path
    is chosen, as in :class:`BeamSearchDecoder`; 0 is plain best-path decoding."""

    def __init__(self, tokenizer, frame_shift: float = 0.03, blank_penalty: float = 0.0):
        check_blank_penalty(blank_penalty)
        self.tokenizer = tokenizer
        self.frame_shift = frame_shift
        self.blank_penalty = float(blank_penalty)

    def decode(self, log_probs: torch.Tensor, length: int | None = None) -> list[Hypothesis]:
        """(T, V) log-probs of one utterance → [best hypothesis] (ValueError for a wrong
        shape, a length past the frames, or NaN)."""
        array, length = checked_log_probs(log_probs, length, len(self.tokenizer))
        log_probs = torch.from_numpy(array[:length])
        if self.blank_penalty:
            scores = log_probs.clone()
            scores[:, 0] -= self.blank_penalty
            best = scores.argmax(dim=-1)
            best_lp = log_probs.gather(1, best[:, None])[:, 0]
        else:
            best_lp, best = log_probs.max(dim=-1)
        best, best_lp = best.tolist(), best_lp.tolist()
        tokens, frames = [], []
        previous = 0
        for t, token in enumerate(best):
            if token != 0 and token != previous:
                tokens.append(token)
                frames.append(t)
            previous = token
        words = self._words(tokens, frames, best, best_lp)
        return [Hypothesis(self.tokenizer.decode(tokens), float(sum(best_lp)), tokens, words)]

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor
                     ) -> list[list[Hypothesis]]:
        """(B, T, V) log-probs and (B,) lengths → one N-best list (of one) per utterance."""
        return [self.decode(log_probs[i], lengths[i]) for i in range(log_probs.shape[0])]

    def _words(self, tokens: list[int], frames: list[int], best: list[int],
               best_lp: list[float]) -> list[Word]:
        words = []
        for group in self.tokenizer.group_words(tokens):
            first, last = frames[group[0]], frames[group[-1]]
            end = last + 1
            while end < len(best) and best[end] == best[last]:  # the last token's whole run
                end += 1
            confidence = sum(math.exp(lp) for lp in best_lp[first:end]) / (end - first)
            words.append(Word(self.tokenizer.decode([tokens[i] for i in group]),
                              first * self.frame_shift, end * self.frame_shift, confidence))
        return words
