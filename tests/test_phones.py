"""Phone CTC: the lexicon, the phone tokenizer, and the lexicon search over phones."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrnn.data.manifest import read_manifest, write_manifest
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.lm import ArpaLM
from speechrnn.scoring import error_rates
from speechrnn.text import (
    BLANK,
    WORD_BOUNDARY,
    CharTokenizer,
    Lexicon,
    LexiconError,
    PhoneTokenizer,
    TokenizerError,
    load_tokenizer,
    save_tokenizer,
    tokenizer_files,
)
from speechrnn.training import load_config
from speechrnn.transcriber import Transcriber
from tests.conftest import train_yesno

REPO = Path(__file__).resolve().parents[1]


def test_lexicon_reads_kaldi_lines_drops_stress_and_keeps_variants(tmp_path):
    path = tmp_path / "lexicon.txt"
    path.write_text("READ\tR IY1 D\nREAD\tR EH1 D\nread R IY0 D\n\nA AH0\n")
    lexicon = Lexicon.load(path)
    assert lexicon.get("read") == [("R", "IY", "D"), ("R", "EH", "D")]  # IY0 = IY1 unstressed
    assert Lexicon.load(path, stress=True).get("read") == [
        ("R", "IY1", "D"), ("R", "EH1", "D"), ("R", "IY0", "D")]
    path.write_text("GOOD G UH1 D\nBROKEN\n")
    with pytest.raises(LexiconError, match=r"lexicon.txt:2: expected a word"):
        Lexicon.load(path)


def test_cmudict_gives_the_39_arpabet_phones():
    phones = Lexicon.cmudict().phones()
    assert len(phones) == 39 and "AH" in phones and "ZH" in phones
    assert Lexicon.cmudict().get("cat") == [("K", "AE", "T")]


def test_phone_tokenizer_round_trip_and_word_boundaries(tmp_path):
    tokenizer = PhoneTokenizer.build(["the cat sat"])
    assert tokenizer.symbols[:2] == [BLANK, WORD_BOUNDARY] and len(tokenizer) == 41
    ids = tokenizer.encode("The cat, sat!")
    names = [tokenizer.symbols[i] for i in ids]
    assert names == ["DH", "AH", "|", "K", "AE", "T", "|", "S", "AE", "T"]
    assert tokenizer.decode(ids) == "DH AH K AE T S AE T"
    assert tokenizer.reference("the cat sat") == "DH AH K AE T S AE T"
    assert [[ids[i] for i in g] for g in tokenizer.group_words(ids)] == [
        ids[0:2], ids[3:6], ids[7:10]]
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    assert (tmp_path / "lexicon.txt").exists()
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.symbols == tokenizer.symbols
    assert again.lexicon.pronunciations == tokenizer.lexicon.pronunciations
    assert again.encode("the cat sat") == ids
    # what copying the model folder (average, package, export) must carry
    assert tokenizer_files(tmp_path) == ["tokenizer.json", "lexicon.txt"]
    (tmp_path / "char").mkdir()
    save_tokenizer(CharTokenizer.build(["the cat"]), tmp_path / "char" / "tokenizer.json")
    assert tokenizer_files(tmp_path / "char") == ["tokenizer.json"]


def test_words_without_a_pronunciation_follow_the_oov_policy(tmp_path):
    corpus = tmp_path / "corpus_lexicon.txt"
    corpus.write_text("HENNY HH EH1 N IY0\nQUIRT K W ER1 T\n")
    # henny is a training word CMUdict lacks: taken from the corpus lexicon; quirt is not a
    # training word, so the corpus lexicon (which also covers its test set) does not add it
    tokenizer = PhoneTokenizer.build(["henny sat"], [corpus])
    assert tokenizer.lexicon.get("henny") == [("HH", "EH", "N", "IY")]
    assert "quirt" not in tokenizer.lexicon
    with pytest.raises(TokenizerError, match="'zxqv'"):
        tokenizer.encode("henny zxqv")
    skipping = PhoneTokenizer(tokenizer.symbols, tokenizer.lexicon, oov="skip")
    assert skipping.encode("henny zxqv") == tokenizer.encode("henny")
    # a phone error rate's reference leaves such a word out rather than failing
    assert tokenizer.reference("henny zxqv") == "HH EH N IY"


# A tiny phone set and lexicon for exact checks: "ab" has two pronunciations, "ba" and "bb"
# are different words, "aa" and "x" are homophones.
SYMBOLS = [BLANK, WORD_BOUNDARY, "A", "B"]


def tiny_tokenizer() -> PhoneTokenizer:
    lexicon = Lexicon()
    for word, phones in [("ab", "A B"), ("ab", "A A B"), ("ba", "B A"), ("bb", "B B"),
                         ("aa", "A"), ("x", "A")]:
        lexicon.add(word, phones.split())
    return PhoneTokenizer(SYMBOLS, lexicon)


def tiny_lm() -> ArpaLM:
    unigrams = {("<s>",): (-99.0, -0.3), ("</s>",): (-0.9, 0.0), ("ab",): (-0.6, -0.2),
                ("ba",): (-0.8, -0.1), ("bb",): (-1.1, -0.4), ("aa",): (-0.7, -0.2),
                ("x",): (-1.5, 0.0)}
    bigrams = {("<s>", "ab"): (-0.2, 0.0), ("ab", "ba"): (-0.1, 0.0),
               ("ba", "</s>"): (-0.05, 0.0), ("bb", "ab"): (-0.3, 0.0)}
    return ArpaLM([{}, unigrams, bigrams])


def ctc_log_likelihood(log_probs: np.ndarray, target: list[int]) -> float:
    """log P(target | posteriors), summed over alignments by torch's CTC loss."""
    if not target:
        return float(log_probs[:, 0].sum())
    loss = torch.nn.functional.ctc_loss(
        torch.from_numpy(log_probs)[:, None, :], torch.tensor([target]),
        torch.tensor([len(log_probs)]), torch.tensor([len(target)]), reduction="sum")
    return -float(loss)


def brute_force_best(log_probs, tokenizer, lm, alpha, beta, max_words=3):
    """The best total score over every word sequence and pronunciation choice: CTC
    log-likelihood of its phones and boundaries + alpha·ln P_LM (with </s>) + beta per word.
    Boundaries may also lead, trail or double (empty words cost nothing), as in the search."""
    words = sorted(tokenizer.lexicon.pronunciations)
    boundary = tokenizer.space_id
    best = -math.inf, None
    for count in range(max_words + 1):
        for sequence in itertools.product(words, repeat=count):
            lm_score = math.log(10) * sum(lm.sentence_score(sequence))
            choices = [tokenizer.spellings(w) for w in sequence]
            gaps = [(0, 1, 2)] + [(1, 2)] * max(count - 1, 0) + [(0, 1, 2)] * (count > 0)
            for spelling in itertools.product(*choices):
                for widths in itertools.product(*gaps):
                    target = [boundary] * widths[0]
                    for ids, width in zip(spelling, widths[1:], strict=True):
                        target += ids + [boundary] * width
                    if len(target) > len(log_probs):
                        continue
                    score = ctc_log_likelihood(log_probs, target) + alpha * lm_score \
                        + beta * count
                    if score > best[0]:
                        best = score, sequence
    return best


@pytest.mark.parametrize("seed", range(6))
def test_lexicon_search_finds_the_brute_force_best_word_sequence(seed):
    tokenizer, lm = tiny_tokenizer(), tiny_lm()
    generator = np.random.default_rng(seed)
    log_probs = torch.log_softmax(torch.from_numpy(
        generator.normal(0, 2.0, (7, len(SYMBOLS)))), dim=-1).numpy()
    decoder = BeamSearchDecoder(tokenizer, lm, beam=1024, alpha=0.8, beta=0.5, token_k=3,
                                token_min_logp=-1e9, blank_skip=1.0, beam_prune_logp=-1e9)
    best = decoder.decode(log_probs)[0]
    expected_score, expected_words = brute_force_best(log_probs, tokenizer, lm, 0.8, 0.5)
    # homophones "aa"/"x": the search keeps the one the LM prefers in context, so its word
    # sequence may name either; the score is the best over all sequences either way
    assert best.score == pytest.approx(expected_score, abs=1e-6)
    assert best.text.split() == list(expected_words)


def test_every_pronunciation_of_a_word_decodes_to_it():
    tokenizer = tiny_tokenizer()
    decoder = BeamSearchDecoder(tokenizer, None, beam=8)
    for phones in (["A", "B"], ["A", "A", "B"]):
        log_probs = np.full((2 * len(phones), len(SYMBOLS)), -20.0)
        for i, phone in enumerate(phones):
            log_probs[2 * i, SYMBOLS.index(phone)] = 0.0
            log_probs[2 * i + 1, 0] = 0.0
        assert decoder.decode(log_probs)[0].text == "ab"


def test_homophones_are_told_apart_by_the_lm_in_context():
    """"aa" and "x" sound alike: after "bb", the bigram-less back-off prefers "aa" (unigram
    −0.7 against −1.5); an LM that knows "bb x" picks "x"."""
    tokenizer = tiny_tokenizer()
    log_probs = np.full((6, len(SYMBOLS)), -20.0)
    for frame, token in enumerate([3, 0, 3, 1, 2, 0]):  # B B | A
        log_probs[frame, token] = 0.0
    lm = tiny_lm()
    assert BeamSearchDecoder(tokenizer, lm, beam=8).decode(log_probs)[0].text == "bb aa"
    lm.ngrams[2][("bb", "x")] = (-0.01, 0.0)
    decoded = BeamSearchDecoder(tokenizer, lm, beam=8).decode(log_probs)[0]
    assert decoded.text == "bb x"
    assert [w.text for w in decoded.words] == ["bb", "x"]


@pytest.fixture(scope="module")
def yesno_phone_model(prepared, tmp_path_factory):
    """The yesno test model (conftest) with phone targets: yes = Y EH S, no = N OW."""
    return train_yesno(prepared, tmp_path_factory.mktemp("yesno-phones"), "tokenizer.kind=phone")


def test_a_tiny_phone_model_learns_yesno_and_decodes_words(prepared, yesno_phone_model):
    entries = read_manifest(prepared["yesno"] / "test.jsonl")
    greedy = Transcriber(yesno_phone_model, lm=None, beam=1)
    assert greedy.unit == "phone"
    hypotheses = [greedy(e.audio).text for e in entries]
    references = [greedy.reference(e.text) for e in entries]
    assert references[0].split()[:3] in (["N", "OW", "N"], ["N", "OW", "Y"], ["Y", "EH", "S"])
    assert error_rates(references, hypotheses)[0] <= 0.05  # phone error rate
    # the lexicon search over all of CMUdict (no LM): words, not phones
    search = Transcriber(yesno_phone_model, lm=None, beam=8)
    assert search.unit == "word"
    words = [search(e.audio).text for e in entries]
    assert error_rates([e.text for e in entries], words)[0] <= 0.05


def test_training_leaves_out_utterances_with_unpronounceable_words(tmp_path, caplog):
    """A phone model's targets come from the lexicon: an utterance with a word that neither
    CMUdict nor the corpus lexicon knows is left out of training and reported, not trained
    on with a silently shortened target."""
    from speechrnn.data.manifest import Entry
    from speechrnn.training.setup import prepare_training

    samples = sorted((REPO / "data" / "samples").glob("*.opus"))[:3]
    entries = [Entry(p.stem, str(p), 3.0, p.with_suffix(".txt").read_text()) for p in samples]
    entries[1] = Entry("odd", entries[1].audio, 3.0, "the zxqv sat")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, entries)
    config = load_config(None, [f"data.train={manifest}", "data.dev=", "tokenizer.kind=phone",
                                "tokenizer.oov=error", "data.num_workers=0"])
    with caplog.at_level("WARNING"):
        setup = prepare_training(config, tmp_path / "run")
    assert [e.id for e in setup.train_entries] == [entries[0].id, entries[2].id]
    assert "1 training utterances left out" in caplog.text and "'zxqv'" in caplog.text
    assert (tmp_path / "run" / "lexicon.txt").exists()


def test_lexicon_words_the_lm_lacks_share_its_unk_probability():
    """"bb" and "x" are lexicon words the LM lacks: each scores log10 P(<unk>) − log10 2, the
    LM's unknown-word mass shared between them, then </s> by the LM's back-off."""
    tokenizer = tiny_tokenizer()
    lm = tiny_lm()
    for word in ("bb", "x"):
        del lm.ngrams[1][(word,)]
    lm.ngrams[2] = {gram: value for gram, value in lm.ngrams[2].items()
                    if "bb" not in gram and "x" not in gram}
    lm.ngrams[1][("<unk>",)] = (-1.0, 0.0)
    log_probs = np.full((3, len(SYMBOLS)), -12.0)
    for frame, token in enumerate([3, 0, 3]):  # B B
        log_probs[frame, token] = 0.0
    log_probs = torch.log_softmax(torch.from_numpy(log_probs), dim=-1).numpy()
    alpha, beta = 0.7, 0.4
    best = BeamSearchDecoder(tokenizer, lm, beam=64, alpha=alpha, beta=beta,
                             blank_skip=1.0).decode(log_probs)[0]
    assert best.text == "bb"
    lm_score = (-1.0 - math.log10(2)) + lm.ngrams[1][("</s>",)][0]
    expected = ctc_log_likelihood(log_probs, [3, 3]) + alpha * math.log(10) * lm_score + beta
    assert best.score == pytest.approx(expected, abs=1e-6)
