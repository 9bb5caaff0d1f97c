"""CTC prefix beam search with word n-gram shallow fusion, compiled with numba.

The search runs in one numba function per utterance: prefixes live in a node table (parent,
token, LM context, position in a character trie of the LM vocabulary), so extending a prefix
is an array write and identical prefixes merge through a child map. Shallow fusion adds
``alpha · ln P_LM(word | history) + beta`` when a word completes; a partial word that leaves
the trie is penalised at once (``oov_penalty``, replaced by the LM's ``<unk>`` score when the
word completes) and by ``oov_char_penalty`` for each further character, a crude spelling
model that keeps one long unknown "word" from swallowing several real ones (without it, on
real speechocean762 posteriors, the search glued whole sentences into one unknown word to pay
``<unk>`` once); in lexicon mode such prefixes are dropped. Hotwords earn
``hotword_weight`` per matching character (taken back if the word turns out different).
``lookahead=True`` also scores a partial word with the best unigram below its trie node
(smearing); it is off by default because on real speechocean762 posteriors it cost 1.7 WER
points on test and 2 on dev (it is context-free, so it under-scores words the trigram expects).

numba is used because the search is a tight loop over small dynamic structures that
neither torch nor numpy vectorise; it ships with librosa, so it adds no dependency.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence

import numba
import numpy as np
import torch
from numba import types
from numba.typed import Dict

from speechrnn.decoding.checks import (
    check_beam,
    check_blank_penalty,
    check_finite,
    checked_log_probs,
)
from speechrnn.decoding.hypothesis import Hypothesis, Word
from speechrnn.decoding.lm import BOS, EOS, UNK, ArpaLM, NgramLM, words_by_spelling

log = logging.getLogger(__name__)
LN10 = math.log(10.0)
NEG_INF = -1e30


@numba.njit(cache=True)
def _key(ids: np.ndarray, count: int) -> np.int64:
    """64-bit FNV-1a style hash of an id sequence (an n-gram or a trie edge)."""
    value = np.uint64(14695981039346656037)
    for i in range(count):
        value = (value ^ np.uint64(ids[i] + 1)) * np.uint64(1099511628211)
    value = (value ^ np.uint64(count)) * np.uint64(1099511628211)
    return np.int64(value)


@numba.njit(cache=True)
def _fill(keys: np.ndarray, values: np.ndarray, table) -> None:
    for i in range(keys.shape[0]):
        table[keys[i]] = values[i]


@numba.njit(cache=True)
def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b <= NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@numba.njit(cache=True)
def _ngram_score(context: np.ndarray, word: int, order: int, index, logprob: np.ndarray,
                 backoff: np.ndarray, unk_logprob: float) -> float:
    """log10 P(word | context) with back-off; ``context`` holds order-1 ids, -1 = none."""
    if word < 0:
        return unk_logprob
    buffer = np.empty(order, np.int64)
    total = 0.0
    for start in range(order):
        size = order - 1 - start
        valid = True
        for j in range(size):
            if context[start + j] < 0:
                valid = False
        if not valid:
            continue
        for j in range(size):
            buffer[j] = context[start + j]
        buffer[size] = word
        key = _key(buffer, size + 1)
        if key in index:
            return total + logprob[index[key]]
        if size > 0:
            key = _key(buffer, size)
            if key in index:
                total += backoff[index[key]]
    return unk_logprob


@numba.njit(cache=True)
def _candidate(node, slot, nxt, nxt_pb, nxt_pnb, n_next):
    """The next frame's candidate slot of ``node`` (added, with zero probability, if new)."""
    s = slot[node]
    if s < 0:
        s = n_next
        slot[node] = s
        nxt[s], nxt_pb[s], nxt_pnb[s] = node, NEG_INF, NEG_INF
        n_next += 1
    return s, n_next


@numba.njit(cache=True)
def _vocabulary_word(node, trie, word_start, words) -> int:
    """The vocabulary id of the (first) word spelled by ``node``'s partial word, -1 if none.

    A trie node ends the words ``words[word_start[n]:word_start[n + 1]]``: several when they
    sound alike (phones: "to", "two", "too") or share a spelling.
    """
    t = trie[node]
    if t < 0 or word_start[t] == word_start[t + 1]:
        return -1
    return words[word_start[t]]


@numba.njit(cache=True)
def _complete_word(node, context, trie, word_start, words, trie_smear, hot, hot_end, hot_bonus,
                   use_lm, alpha, beta, oov_penalty, order, ngram_index, ngram_logprob,
                   ngram_backoff, unk_logprob, unk_id):
    """Score change when the partial word of ``node`` completes, and the word's LM id.

    The temporary partial-word score (look-ahead or out-of-vocabulary penalty) is replaced
    by the word's real LM score (an unknown word scores as ``<unk>``, or ``unk_logprob``
    without one); of words that end at the same trie node the LM's likeliest in this
    context is taken; an unfinished hotword gives its bonus back.
    """
    word = _vocabulary_word(node, trie, word_start, words)
    word_id = word if word >= 0 else unk_id
    delta = 0.0
    if use_lm:
        if trie[node] < 0:
            delta -= oov_penalty
        else:
            delta -= alpha * LN10 * trie_smear[trie[node]]
        best = _ngram_score(context, word_id, order, ngram_index, ngram_logprob,
                            ngram_backoff, unk_logprob)
        if word >= 0:
            for k in range(word_start[trie[node]] + 1, word_start[trie[node] + 1]):
                score = _ngram_score(context, words[k], order, ngram_index, ngram_logprob,
                                     ngram_backoff, unk_logprob)
                if score > best:
                    best, word_id = score, words[k]
        delta += alpha * LN10 * best + beta
    if not (hot[node] >= 0 and hot_end[hot[node]]):
        delta -= hot_bonus[node]
    return delta, word_id


@numba.njit(cache=True)
def _search(log_probs, length, beam, token_k, token_min_logp, blank_skip_logp,
            beam_prune_logp, space_id, alpha, beta, oov_penalty, oov_char_penalty, lexicon,
            use_lm, trie_children, word_start, words, trie_smear, order, ngram_index, ngram_logprob,
            ngram_backoff, unk_logprob, bos_id, eos_id, unk_id, hot_children, hot_end,
            hotword_weight, nbest):
    vocab = log_probs.shape[1]
    n_tokens = min(token_k, vocab - 1)
    capacity = length * beam * (n_tokens + 1) + 2
    width = max(order - 1, 1)
    parent = np.empty(capacity, np.int64)
    token = np.empty(capacity, np.int64)
    frame = np.empty(capacity, np.int64)
    entry = np.empty(capacity, np.float64)  # best probability of entering the token
    lm = np.empty(capacity, np.float64)
    context = np.empty((capacity, width), np.int64)
    trie = np.empty(capacity, np.int64)
    word_len = np.empty(capacity, np.int64)
    hot = np.empty(capacity, np.int64)
    hot_bonus = np.empty(capacity, np.float64)
    emitted = np.full(capacity, -1, np.int64)  # at a word boundary: the word it completed
    slot = np.full(capacity, -1, np.int64)
    children = Dict.empty(key_type=types.int64, value_type=types.int64)
    edge = np.empty(2, np.int64)

    # root: empty prefix at the start of a sentence
    parent[0], token[0], frame[0], lm[0] = -1, -1, -1, 0.0
    context[0, :] = -1
    context[0, width - 1] = bos_id
    trie[0], word_len[0], hot[0], hot_bonus[0] = 0, 0, 0, 0.0
    nodes = 1

    cur = np.zeros(beam, np.int64)
    cur_pb = np.full(beam, NEG_INF)
    cur_pnb = np.full(beam, NEG_INF)
    cur_pb[0] = 0.0
    n_cur = 1
    limit = beam * (n_tokens + 2)
    nxt = np.empty(limit, np.int64)
    nxt_pb = np.empty(limit)
    nxt_pnb = np.empty(limit)

    for t in range(length):
        lp = log_probs[t]
        if lp[0] >= blank_skip_logp:  # blank dominates: keep prefixes, only blank moves
            for i in range(n_cur):
                cur_pb[i] = _logaddexp(cur_pb[i], cur_pnb[i]) + lp[0]
                cur_pnb[i] = NEG_INF
            continue
        order_tokens = np.argsort(-lp[1:])[:n_tokens] + 1
        n_next = 0
        for i in range(n_cur):
            node = cur[i]
            pb, pnb = cur_pb[i], cur_pnb[i]
            total = _logaddexp(pb, pnb)
            # blank: prefix unchanged
            s, n_next = _candidate(node, slot, nxt, nxt_pb, nxt_pnb, n_next)
            nxt_pb[s] = _logaddexp(nxt_pb[s], total + lp[0])
            last = token[node]
            if last > 0:  # repeated token without blank collapses into the same prefix
                nxt_pnb[s] = _logaddexp(nxt_pnb[s], pnb + lp[last])
            for j in range(n_tokens):
                c = order_tokens[j]
                if lp[c] < token_min_logp:
                    break
                if c == last:
                    gain = pb + lp[c]
                else:
                    gain = total + lp[c]
                if gain <= NEG_INF:
                    continue
                key = node * vocab + c
                child = children[key] if key in children else -1
                if child == -1:
                    # create the extended prefix and its LM / trie / hotword state
                    child = nodes
                    parent[child], token[child], frame[child] = node, c, t
                    entry[child] = NEG_INF
                    lm[child] = lm[node]
                    context[child, :] = context[node, :]
                    trie[child], word_len[child] = trie[node], word_len[node]
                    hot[child], hot_bonus[child] = hot[node], hot_bonus[node]
                    valid = True
                    if c == space_id:
                        if lexicon and word_len[node] > 0 and \
                                _vocabulary_word(node, trie, word_start, words) < 0:
                            valid = False  # a space may only end a whole lexicon word
                        elif word_len[node] > 0:
                            delta, word = _complete_word(
                                node, context[node], trie, word_start, words, trie_smear, hot,
                                hot_end, hot_bonus, use_lm, alpha, beta, oov_penalty, order,
                                ngram_index, ngram_logprob, ngram_backoff, unk_logprob, unk_id)
                            lm[child] += delta
                            emitted[child] = word
                            for w in range(width - 1):
                                context[child, w] = context[node, w + 1]
                            context[child, width - 1] = word
                        trie[child], word_len[child], hot[child], hot_bonus[child] = 0, 0, 0, 0.0
                    else:
                        word_len[child] = word_len[node] + 1
                        if trie[node] < 0 and use_lm:  # spelling cost of an unknown word
                            lm[child] += oov_char_penalty
                        if trie[node] >= 0:
                            edge[0], edge[1] = trie[node], c
                            hashed = _key(edge, 2)
                            trie[child] = trie_children[hashed] if hashed in trie_children \
                                else -1
                            if use_lm:  # move the look-ahead from the old to the new node
                                lm[child] -= alpha * LN10 * trie_smear[trie[node]]
                            if trie[child] < 0:
                                if lexicon:
                                    valid = False
                                elif use_lm:
                                    lm[child] += oov_penalty
                            elif use_lm:
                                lm[child] += alpha * LN10 * trie_smear[trie[child]]
                        if hot[node] >= 0:
                            edge[0], edge[1] = hot[node], c
                            hashed = _key(edge, 2)
                            hot[child] = hot_children[hashed] if hashed in hot_children else -1
                            if hot[child] >= 0:
                                lm[child] += hotword_weight
                                hot_bonus[child] += hotword_weight
                            else:
                                lm[child] -= hot_bonus[node]
                                hot_bonus[child] = 0.0
                    if not valid:
                        child = -2
                    else:
                        nodes += 1
                    children[key] = child
                if child < 0:
                    continue
                if gain > entry[child]:  # the token's time: its most likely entry frame
                    entry[child] = gain
                    frame[child] = t
                s, n_next = _candidate(child, slot, nxt, nxt_pb, nxt_pnb, n_next)
                nxt_pnb[s] = _logaddexp(nxt_pnb[s], gain)
        # prune to the beam by acoustic + LM score
        scores = np.empty(n_next)
        for s in range(n_next):
            scores[s] = _logaddexp(nxt_pb[s], nxt_pnb[s]) + lm[nxt[s]]
            slot[nxt[s]] = -1
        ranked = np.argsort(-scores)
        best = scores[ranked[0]]
        n_cur = 0
        for r in range(min(beam, n_next)):
            s = ranked[r]
            if scores[s] < best + beam_prune_logp:
                break
            cur[n_cur], cur_pb[n_cur], cur_pnb[n_cur] = nxt[s], nxt_pb[s], nxt_pnb[s]
            n_cur += 1

    # finish: score the last partial word and the end of sentence
    final = np.full(n_cur, NEG_INF)
    last_word = np.full(n_cur, -1, np.int64)
    for i in range(n_cur):
        node = cur[i]
        extra = 0.0
        ctx = context[node].copy()
        if word_len[node] > 0:
            if lexicon and _vocabulary_word(node, trie, word_start, words) < 0:
                continue
            delta, word = _complete_word(
                node, ctx, trie, word_start, words, trie_smear, hot, hot_end, hot_bonus, use_lm,
                alpha, beta, oov_penalty, order, ngram_index, ngram_logprob, ngram_backoff,
                unk_logprob, unk_id)
            extra += delta
            last_word[i] = word
            for w in range(width - 1):
                ctx[w] = ctx[w + 1]
            ctx[width - 1] = word
        if use_lm:
            extra += alpha * LN10 * _ngram_score(ctx, eos_id, order, ngram_index,
                                                 ngram_logprob, ngram_backoff, unk_logprob)
        final[i] = _logaddexp(cur_pb[i], cur_pnb[i]) + lm[node] + extra
    ranked = np.argsort(-final)
    count = 0
    for r in range(min(nbest, n_cur)):
        if final[ranked[r]] > NEG_INF:
            count += 1
    out_nodes = np.empty(count, np.int64)
    out_scores = np.empty(count)
    out_last = np.empty(count, np.int64)
    for r in range(count):
        out_nodes[r] = cur[ranked[r]]
        out_scores[r] = final[ranked[r]]
        out_last[r] = last_word[ranked[r]]
    return out_nodes, out_scores, out_last, parent[:nodes].copy(), token[:nodes].copy(), \
        frame[:nodes].copy(), emitted[:nodes].copy()


def _edge_keys(pairs: np.ndarray) -> np.ndarray:
    """``_key`` of many (node, token) pairs at once (numpy's uint64 products wrap like
    numba's, so the keys agree; a trie of CMUdict has ~300,000 edges)."""
    prime = np.uint64(1099511628211)
    value = np.full(len(pairs), np.uint64(14695981039346656037))
    with np.errstate(over="ignore"):
        for column in range(pairs.shape[1]):
            value = (value ^ (pairs[:, column] + 1).astype(np.uint64)) * prime
        value = (value ^ np.uint64(pairs.shape[1])) * prime
    return value.view(np.int64)


def _int_dict(keys: np.ndarray, values: np.ndarray | None = None):
    """A numba typed dict key → value (value defaults to the key's position)."""
    table = Dict.empty(key_type=types.int64, value_type=types.int64)
    _fill(keys, np.arange(len(keys), dtype=np.int64) if values is None else values, table)
    return table


class _Tables:
    """numba-ready arrays for the LM, its vocabulary trie and the hotword trie."""

    def __init__(self, tokenizer, lm: NgramLM | None, hotwords: Sequence[str],
                 lexicon: Sequence[str] | None):
        if lm is not None:
            words = sorted(w for (w,) in lm.ngrams[1])
            self.word_ids = {w: i for i, w in enumerate(words)}
            keys, logprobs, backoffs = [], [], []
            for k in range(1, lm.order + 1):
                for gram, (logprob, backoff) in lm.ngrams[k].items():
                    keys.append(_key(np.array([self.word_ids[w] for w in gram], np.int64), k))
                    logprobs.append(logprob)
                    backoffs.append(backoff)
            self.ngram_keys = np.array(keys, np.int64)
            self.ngram_logprob = np.array(logprobs, np.float64)
            self.ngram_backoff = np.array(backoffs, np.float64)
            self.order = lm.order
            self.unk_logprob = lm.unk_logprob
        else:
            self.word_ids = {}
            self.ngram_keys = np.zeros(0, np.int64)
            self.ngram_logprob = self.ngram_backoff = np.zeros(0)
            self.order, self.unk_logprob = 1, -100.0
        lm_words = [w for w in self.word_ids if w not in (BOS, EOS, UNK)]
        vocabulary = lm_words
        if lexicon is not None:
            # A lexicon word is the LM's word of the same spelling ("WE" of a transcript word
            # list is the LM's "we"); only words the LM lacks get ids of their own.
            by_spelling = words_by_spelling(lm_words, tokenizer)
            vocabulary = list(dict.fromkeys(by_spelling.get(tokenizer.normalize(w), w)
                                            for w in lexicon))
        outside = [w for w in vocabulary if w not in self.word_ids]
        if lm is not None and outside and (UNK,) in lm.ngrams[1]:
            # Lexicon words the LM lacks (most of CMUdict for a phone model) share the LM's
            # <unk> probability evenly, rather than each getting all of it (or none).
            self.unk_logprob = lm.ngrams[1][(UNK,)][0] - math.log10(len(outside))
        for word in vocabulary:
            self.word_ids.setdefault(word, len(self.word_ids))
        self.words = list(self.word_ids)  # vocabulary id → word
        self.bos_id = self.word_ids.get(BOS, -1)
        self.eos_id = self.word_ids.get(EOS, -1)
        self.unk_id = self.word_ids.get(UNK, -1)
        self.trie_keys, self.word_start, self.trie_words, parents = self._trie(
            [(tokenizer.spellings(w), self.word_ids[w]) for w in vocabulary])
        self.trie_smear = self._smear(lm, parents)
        self.hot_keys, hot_start, _, _ = self._trie(
            [(tokenizer.spellings(w), 1) for w in hotwords])
        self.hot_end = hot_start[1:] > hot_start[:-1]

    def _smear(self, lm: NgramLM | None, parents: dict[int, int]) -> np.ndarray:
        """Per trie node, the best unigram log10 probability among the words below it: a
        context-free LM look-ahead for partial words (0 at the root)."""
        if lm is None:
            return np.zeros(len(self.word_start) - 1)
        smear = np.full(len(self.word_start) - 1, -99.0)
        smear[0] = 0.0
        starts = self.word_start.tolist()
        for node in range(len(starts) - 1):
            if starts[node] == starts[node + 1]:
                continue
            best = max(lm.ngrams[1].get((self.words[word_id],), (lm.unk_logprob, 0.0))[0]
                       for word_id in self.trie_words[starts[node]:starts[node + 1]].tolist())
            while node > 0:
                if smear[node] >= best:
                    break
                smear[node] = best
                node = parents[node]
        return smear

    @staticmethod
    def _trie(entries) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray,
                                dict[int, int]]:
        """A prefix tree of (spellings, word id) entries — a word may have several
        spellings (pronunciations), and several words one (homophones). Returns the edges
        (hashed (node, token) keys and their child nodes), the words ending at each node
        (``words[start[n]:start[n + 1]]``) and each node's parent."""
        edges: dict[tuple[int, int], int] = {}
        ending: list[list[int]] = [[]]
        for spellings, word_id in entries:
            for ids in spellings:  # a word the model cannot spell has none
                node = 0
                for token in ids:
                    child = edges.get((node, token))
                    if child is None:
                        child = len(ending)
                        edges[(node, token)] = child
                        ending.append([])
                    node = child
                if word_id not in ending[node]:
                    ending[node].append(word_id)
        pairs = np.array(list(edges) or np.zeros((0, 2)), np.int64).reshape(-1, 2)
        children = np.array(list(edges.values()), np.int64)
        start = np.zeros(len(ending) + 1, np.int64)
        start[1:] = np.cumsum([len(words) for words in ending])
        words = np.array([w for words in ending for w in words], np.int64)
        parents = {child: node for (node, _), child in edges.items()}
        return (_edge_keys(pairs), children), start, words, parents


class BeamSearchDecoder:
    """CTC prefix beam search; ``decode(log_probs, length) -> list[Hypothesis]`` (N-best).

    ``lm`` is an :class:`NgramLM` such as :class:`ArpaLM` (or a path to an ARPA file);
    ``lexicon`` restricts output to those words; ``hotwords`` are boosted by
    ``hotword_weight`` per character.
    ``blank_penalty`` (nats, ≥ 0) is taken off the blank's log-probability of every frame
    before the search: CTC models, and more so ensembles whose members spike on different
    frames, let blank win frames that hold a weak character, which deletes it; tuned on dev
    with the LM weights (speechrnn tune-lm). Word confidences use the posteriors as given.
    Frame times use ``frame_shift`` seconds per output frame.
    """

    def __init__(self, tokenizer, lm: NgramLM | str | None = None, beam: int = 16,
                 alpha: float = 0.5, beta: float = 1.0, token_k: int = 8,
                 token_min_logp: float = -8.0, blank_skip: float = 0.999,
                 beam_prune_logp: float = -10.0, oov_penalty: float = -10.0,
                 oov_char_penalty: float = -2.0,
                 lexicon: Sequence[str] | None = None, hotwords: Sequence[str] = (),
                 hotword_weight: float = 5.0, nbest: int = 1, frame_shift: float = 0.03,
                 lookahead: bool = False, blank_penalty: float = 0.0):
        if isinstance(lm, (str,)) or hasattr(lm, "__fspath__"):
            lm = ArpaLM.load(lm)
        if lm is not None and not isinstance(lm, NgramLM):
            raise TypeError("the beam search fuses n-gram tables (an NgramLM such as ArpaLM); "
                            "use the flashlight backend for KenLM binaries")
        if getattr(tokenizer, "kind", "char") not in ("char", "phone"):
            raise ValueError("word-level fusion needs a character or phone tokenizer")
        if tokenizer.kind == "phone" and lexicon is None:
            # phones spell only the words of the pronunciation lexicon
            lexicon = list(tokenizer.lexicon.pronunciations)
        check_beam(beam)  # a beam of 0 would silently decode every utterance to ""
        check_beam(nbest, "nbest")
        for name, value in [("alpha (the LM weight)", alpha), ("beta (the word bonus)", beta),
                            ("hotword_weight", hotword_weight), ("oov_penalty", oov_penalty),
                            ("oov_char_penalty", oov_char_penalty),
                            ("token_min_logp", token_min_logp),
                            ("beam_prune_logp", beam_prune_logp)]:
            check_finite(name, value)
        if isinstance(token_k, bool) or not isinstance(token_k, int) or token_k < 1:
            raise ValueError(f"token_k must be a whole number ≥ 1, not {token_k!r}")
        if not 0 < blank_skip <= 1:
            raise ValueError(f"blank_skip must be a probability in (0, 1], not {blank_skip!r}")
        check_blank_penalty(blank_penalty)
        self.tokenizer = tokenizer
        self.lm = lm
        self.beam, self.alpha, self.beta = beam, alpha, beta
        self.token_k, self.token_min_logp = token_k, token_min_logp
        self.blank_skip_logp = math.log(blank_skip) if blank_skip < 1 else 1.0
        self.beam_prune_logp = beam_prune_logp
        self.oov_penalty = oov_penalty
        self.oov_char_penalty = oov_char_penalty
        self.lexicon = lexicon is not None
        self.hotword_weight = hotword_weight
        self.nbest = nbest
        self.frame_shift = frame_shift
        self.lookahead = float(lookahead)
        self.blank_penalty = float(blank_penalty)
        self.tables = _Tables(tokenizer, lm, hotwords, lexicon)
        self._dicts = None
        if lm is not None:
            self._warn_unspellable(lm)

    def _warn_unspellable(self, lm: NgramLM) -> None:
        """An LM whose words the model mostly cannot spell (another language or alphabet,
        upper-case words for a lower-case model) fuses nothing but the unknown-word score."""
        words = [w for w in lm.vocabulary if w not in (BOS, EOS, UNK)]
        spellable = sum(1 for w in words if self.tokenizer.spellings(w))
        if words and spellable < 0.5 * len(words):
            log.warning("%s: the model can spell only %d of its %d words; is it the LM for "
                        "this model's language and alphabet?", lm.path or "the LM",
                        spellable, len(words))

    def with_weights(self, alpha: float, beta: float, blank_penalty: float
                     ) -> BeamSearchDecoder:
        """This decoder with other LM weight, word bonus and blank penalty, sharing its
        tables (built once: a grid of weights costs no rebuilding)."""
        check_finite("alpha (the LM weight)", alpha)
        check_finite("beta (the word bonus)", beta)
        check_blank_penalty(blank_penalty)
        other = copy.copy(self)
        other.alpha, other.beta, other.blank_penalty = alpha, beta, float(blank_penalty)
        return other

    def __getstate__(self) -> dict:  # typed dicts are rebuilt in worker processes
        state = self.__dict__.copy()
        state["_dicts"] = None
        return state

    def _typed(self):
        if self._dicts is None:
            tables = self.tables
            self._dicts = (_int_dict(tables.ngram_keys), _int_dict(*tables.trie_keys),
                           _int_dict(*tables.hot_keys))
        return self._dicts

    def decode(self, log_probs: torch.Tensor | np.ndarray, length: int | None = None
               ) -> list[Hypothesis]:
        """(T, V) natural-log CTC posteriors of one utterance → N-best hypotheses
        (ValueError for a wrong shape, a length past the frames, or NaN)."""
        log_probs, length = checked_log_probs(log_probs, length, len(self.tokenizer))
        if length == 0:
            return [Hypothesis("", 0.0)]
        ngram_index, trie_children, hot_children = self._typed()
        tables = self.tables
        search_log_probs = log_probs
        if self.blank_penalty:
            search_log_probs = log_probs.copy()
            search_log_probs[:, 0] -= self.blank_penalty
        nodes, scores, last_words, parent, token, frame, emitted = _search(
            # frames are skipped by the blank's own posterior, so the penalty costs no speed
            search_log_probs, length, self.beam, self.token_k, self.token_min_logp,
            self.blank_skip_logp - self.blank_penalty, self.beam_prune_logp,
            self.tokenizer.space_id,
            self.alpha, self.beta, self.oov_penalty, self.oov_char_penalty, self.lexicon,
            self.lm is not None,
            trie_children, tables.word_start, tables.trie_words,
            tables.trie_smear * self.lookahead, tables.order,
            ngram_index, tables.ngram_logprob, tables.ngram_backoff, tables.unk_logprob,
            tables.bos_id, tables.eos_id, tables.unk_id, hot_children, tables.hot_end,
            self.hotword_weight, self.nbest)
        hypotheses = []
        for node, score, last_word in zip(nodes.tolist(), scores.tolist(), last_words.tolist(),
                                          strict=True):
            tokens, frames, word_ids = [], [], [last_word]
            while node > 0:
                tokens.append(int(token[node]))
                frames.append(int(frame[node]))
                word_ids.append(int(emitted[node]))
                node = int(parent[node])
            tokens.reverse()
            frames.reverse()
            # the words the search chose, for tokenizers whose tokens do not spell them
            chosen = [tables.words[w] for w in reversed(word_ids) if w >= 0]
            # A node keeps its token's most likely entry frame over all the paths merged
            # into it, which can precede the token before it; in CTC each token takes a
            # frame of its own after the previous one.
            for i in range(1, len(frames)):
                frames[i] = max(frames[i], frames[i - 1] + 1)
            words = self._words(tokens, frames, log_probs, length)
            if self.tokenizer.kind == "phone":
                words = [dataclasses.replace(word, text=text)
                         for word, text in zip(words, chosen, strict=True)]
                text = " ".join(chosen)
            else:
                text = self.tokenizer.decode(tokens)
            hypotheses.append(Hypothesis(text, score, tokens, words))
        return hypotheses or [Hypothesis("", float("-inf"))]

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor
                     ) -> list[list[Hypothesis]]:
        return [self.decode(log_probs[i], lengths[i]) for i in range(log_probs.shape[0])]

    def _words(self, tokens: list[int], frames: list[int], log_probs: np.ndarray,
               length: int) -> list[Word]:
        """Word start/end (s) from each character's most likely entry frame; the end runs to
        the last frame where the word's final character stays the best token;
        confidence is the mean posterior of the word's characters at their frames."""
        words = []
        for group in self.tokenizer.group_words(tokens):
            first, last = frames[group[0]], frames[group[-1]]
            final_token = tokens[group[-1]]
            end = last + 1
            while end < length and int(np.argmax(log_probs[end])) == final_token:
                end += 1
            confidence = float(np.mean([math.exp(log_probs[frames[i], tokens[i]])
                                        for i in group]))
            words.append(Word(self.tokenizer.decode([tokens[i] for i in group]),
                              first * self.frame_shift, end * self.frame_shift, confidence))
        return words


def _decode_one(decoder: BeamSearchDecoder, item) -> list[Hypothesis]:
    log_probs, length = item
    return decoder.decode(log_probs, length)


_shared_items: Sequence = ()  # decode_grid's utterances, set once in each worker process


def _share_items(items: Sequence) -> None:
    global _shared_items
    _shared_items = items


def _decode_shared(decoder: BeamSearchDecoder) -> list[list[Hypothesis]]:
    return [_decode_one(decoder, item) for item in _shared_items]


def _spawn_pool(workers: int, **options):
    """Worker processes started with *spawn* (safe with threads, CUDA and macOS/Windows,
    unlike fork-only designs)."""
    import multiprocessing

    return multiprocessing.get_context("spawn").Pool(workers, **options)


def decode_many(decoder: BeamSearchDecoder, items: Sequence[tuple[np.ndarray, int]],
                workers: int = 1) -> list[list[Hypothesis]]:
    """Decode (log_probs, length) pairs, in ``workers`` processes; order is kept."""
    if workers <= 1:
        return [_decode_one(decoder, item) for item in items]
    import functools

    with _spawn_pool(workers) as pool:
        chunk = max(1, len(items) // (4 * workers))
        return pool.map(functools.partial(_decode_one, decoder), items, chunksize=chunk)


def decode_grid(decoders: Sequence[BeamSearchDecoder], items: Sequence[tuple[np.ndarray, int]],
                workers: int = 1) -> Iterator[list[list[Hypothesis]]]:
    """Every decoder (one per grid point of LM weights, say) over the same (log_probs,
    length) pairs, yielded in the decoders' order as each finishes: the pairs go to each of
    ``workers`` processes once, the decoders one at a time."""
    if workers <= 1:
        for decoder in decoders:
            yield [_decode_one(decoder, item) for item in items]
        return
    with _spawn_pool(workers, initializer=_share_items, initargs=(items,)) as pool:
        yield from pool.imap(_decode_shared, decoders)
