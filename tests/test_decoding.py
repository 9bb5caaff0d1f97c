"""Decoders and LMs against independent references: brute force, kenlm, forced alignment."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from speechrnn import audio
from speechrnn.data import read_manifest
from speechrnn.decoding import GreedyDecoder, greedy_ids
from speechrnn.decoding.beam import BeamSearchDecoder, decode_many
from speechrnn.decoding.lm import ArpaLM, LMError, NgramLM, build_lm, lm_words
from speechrnn.models.checkpoint import load_checkpoint
from speechrnn.text import CharTokenizer

TOKENIZER = CharTokenizer(["<blank>", " ", "a", "b", "c"])
EXACT = dict(token_k=100, token_min_logp=-1e9, blank_skip=1.0, beam_prune_logp=-1e9)


def _random_log_probs(frames: int, vocab: int, seed: int, sharpness: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharpness * torch.randn(frames, vocab, generator=generator), -1)


def _collapse(path):
    out, previous = [], None
    for token in path:
        if token != previous and token != 0:
            out.append(token)
        previous = token
    return tuple(out)


def test_best_prefix_score_equals_brute_force_sum_over_alignments():
    tokenizer = CharTokenizer(["<blank>", " ", "a"])
    for seed in range(5):
        log_probs = _random_log_probs(6, 3, seed)
        totals: dict = {}
        for path in itertools.product(range(3), repeat=6):
            probability = math.exp(sum(float(log_probs[t, k]) for t, k in enumerate(path)))
            totals[_collapse(path)] = totals.get(_collapse(path), 0.0) + probability
        best_prefix, best_probability = max(totals.items(), key=lambda item: item[1])
        decoder = BeamSearchDecoder(tokenizer, None, beam=200, nbest=5, **EXACT)
        hypotheses = decoder.decode(log_probs)
        assert tuple(hypotheses[0].tokens) == best_prefix
        assert hypotheses[0].score == pytest.approx(math.log(best_probability), abs=1e-6)
        for hypothesis in hypotheses:  # every N-best score is the exact prefix probability
            assert hypothesis.score == pytest.approx(math.log(totals[tuple(hypothesis.tokens)]),
                                                     abs=1e-6)


def test_blank_penalty_scores_each_blank_frame_against_brute_force():
    """With a blank penalty p, a prefix's score is the sum over its alignments of their
    probability times exp(-p) per blank frame; word confidences keep the true posteriors."""
    tokenizer = CharTokenizer(["<blank>", " ", "a"])
    penalty = 0.7
    for seed in range(5):
        log_probs = _random_log_probs(6, 3, seed, sharpness=2.0)
        totals: dict = {}
        for path in itertools.product(range(3), repeat=6):
            log_p = sum(float(log_probs[t, k]) for t, k in enumerate(path))
            weight = math.exp(log_p - penalty * path.count(0))
            totals[_collapse(path)] = totals.get(_collapse(path), 0.0) + weight
        best_prefix, best_weight = max(totals.items(), key=lambda item: item[1])
        decoder = BeamSearchDecoder(tokenizer, None, beam=200, blank_penalty=penalty, **EXACT)
        best = decoder.decode(log_probs)[0]
        assert tuple(best.tokens) == best_prefix
        assert best.score == pytest.approx(math.log(best_weight), abs=1e-6)


@pytest.mark.parametrize("penalty,text", [(0.0, ""), (0.3, ""), (0.5, "a")])
def test_blank_penalty_restores_a_character_that_blank_outweighs(penalty, text):
    """One frame gives blank 0.6 and "a" 0.4 between two certain blanks: "a" wins once the
    penalty exceeds ln(0.6 / 0.4) = 0.405 nats, in the greedy and the beam decoder alike
    (the beam's certain-blank frames are skipped, as without a penalty)."""
    probabilities = torch.tensor([[1.0, 0, 0], [0.6, 0, 0.4], [1.0, 0, 0]]).clamp(min=1e-12)
    log_probs = probabilities.log()
    tokenizer = CharTokenizer(["<blank>", " ", "a"])
    greedy = GreedyDecoder(tokenizer, blank_penalty=penalty).decode(log_probs)[0]
    beam = BeamSearchDecoder(tokenizer, None, beam=4, blank_penalty=penalty).decode(log_probs)[0]
    assert greedy.text == beam.text == text
    if text:
        assert greedy.words[0].confidence == pytest.approx(0.4)
    for negative in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="blank penalty must be ≥ 0"):
            BeamSearchDecoder(tokenizer, None, blank_penalty=negative)


def _confident(frames: int, vocab: int, seed: int, top: float = 0.95) -> torch.Tensor:
    """Posteriors whose best token has probability ``top`` in every frame (the others share
    the rest): here the most probable prefix is the best path's, so beam 1 must be greedy."""
    generator = torch.Generator().manual_seed(seed)
    best = torch.randint(vocab, (frames,), generator=generator)
    probabilities = torch.full((frames, vocab), (1 - top) / (vocab - 1))
    probabilities[torch.arange(frames), best] = top
    return probabilities.log()


def test_beam_one_without_lm_equals_greedy_on_confident_posteriors():
    for seed in range(20):
        log_probs = _confident(80, len(TOKENIZER), seed)
        greedy = greedy_ids(log_probs[None], torch.tensor([80]))[0]
        beam = BeamSearchDecoder(TOKENIZER, None, beam=1, **EXACT).decode(log_probs)[0]
        assert beam.tokens == greedy
        assert GreedyDecoder(TOKENIZER).decode(log_probs)[0].tokens == greedy
    # A beam of 0 kept no prefix and decoded every utterance to "", without a word.
    for beam, nbest in ((0, 1), (-5, 1), (4, 0)):
        with pytest.raises(ValueError, match="(beam|nbest) must be a whole number from 1"):
            BeamSearchDecoder(TOKENIZER, None, beam=beam, nbest=nbest)


class KenLMReference:
    """kenlm's scores with ArpaLM's context convention: the independent reference."""

    def __init__(self, path):
        import kenlm

        self.kenlm, self.model = kenlm, kenlm.Model(str(path))

    def score(self, context, word):
        state = self.kenlm.State()
        if context and context[0] == "<s>":
            self.model.BeginSentenceWrite(state)
            context = context[1:]
        else:
            self.model.NullContextWrite(state)
        for previous in context:
            following = self.kenlm.State()
            self.model.BaseScore(state, previous, following)
            state = following
        return self.model.BaseScore(state, word, self.kenlm.State())

    def sentence_score(self, words):
        return [s[0] for s in self.model.full_scores(" ".join(words), bos=True, eos=True)]


def test_arpa_reader_matches_kenlm(data_dir, tmp_path):
    pytest.importorskip("kenlm")
    texts = [line.split()[1:] for line in
             (data_dir / "speechocean762" / "train" / "text").read_text().splitlines()]
    built = build_lm(texts, order=3, prune=(0, 0, 1))
    built.save(tmp_path / "lm.arpa.gz")
    ours, theirs = ArpaLM.load(tmp_path / "lm.arpa.gz"), KenLMReference(tmp_path / "lm.arpa.gz")
    random.seed(0)
    words = sorted(ours.vocabulary - {"<s>"}) + ["NOTAWORD"]
    sentences = random.sample(texts, 50) + [random.sample(words, 6) for _ in range(50)]
    for sentence in sentences:
        assert ours.sentence_score(sentence) == pytest.approx(theirs.sentence_score(sentence),
                                                              abs=1e-4)
        assert ours.score(["<s>", *sentence[:1]], sentence[-1]) == pytest.approx(
            theirs.score(["<s>", *sentence[:1]], sentence[-1]), abs=1e-4)


def test_build_lm_refuses_prune_counts_it_cannot_use():
    """A library caller gets the CLI's checks: extra counts were silently ignored before."""
    sentences = [["a", "b"], ["a", "c"]]
    for order, prune, message in ((2, (0, 1, 1), "3 prune counts for a 2-gram LM"),
                                  (3, (0, -1), "must be at least 0"),
                                  (0, (), "order must be at least 1")):
        with pytest.raises(ValueError, match=message):
            build_lm(sentences, order=order, prune=prune)


@pytest.mark.parametrize("prune", [(), (0, 1, 1)])
def test_built_lm_normalises(data_dir, prune):
    texts = [line.split()[1:] for line in
             (data_dir / "speechocean762" / "train" / "text").read_text().splitlines()]
    model = build_lm(texts, order=3, prune=prune)
    vocabulary = sorted(model.vocabulary - {"<s>"})
    random.seed(1)
    histories = [("<s>",), ()] + [tuple(["<s>", *t][: random.randint(1, 3)])
                                  for t in random.sample(texts, 20)]
    histories += [(random.choice(vocabulary), random.choice(vocabulary)) for _ in range(5)]
    for history in histories:
        total = sum(10 ** model.score(history, word) for word in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_arpa_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0 a\nnot-a-number b\n\\end\\\n")
    with pytest.raises(LMError, match="bad.arpa:6"):
        ArpaLM.load(bad)
    with pytest.raises(LMError, match="no such language model"):
        ArpaLM.load(tmp_path / "absent.arpa")


def _spell(text: str, tokenizer: CharTokenizer, strength: dict | None = None):
    """Posteriors that spell ``text`` one character per two frames; ``strength`` overrides
    the probability of a (position → {token: logp}) at chosen positions."""
    frames = 2 * len(text) + 2
    log_probs = torch.full((frames, len(tokenizer)), -12.0)
    log_probs[:, 0] = 0.0
    for index, char in enumerate(text):
        row = log_probs[2 * index + 1]
        row[:] = -12.0
        row[tokenizer.symbols.index(char)] = -0.05
        row[0] = -3.0
        for token, value in (strength or {}).get(index, {}).items():
            row[tokenizer.symbols.index(token)] = value
    return torch.log_softmax(log_probs, -1)


def test_hotword_raises_recall():
    tokenizer = CharTokenizer(["<blank>", " ", *"abcdehklmnorstuy"])
    # The acoustics slightly prefer "marcus"; the hotword is "markus".
    log_probs = _spell("hello marcus", tokenizer, {9: {"k": -0.9, "c": -0.6}})
    plain = BeamSearchDecoder(tokenizer, None, beam=8).decode(log_probs)[0].text
    boosted = BeamSearchDecoder(tokenizer, None, beam=8, hotwords=["markus"],
                                hotword_weight=2.0).decode(log_probs)[0].text
    assert plain == "hello marcus"
    assert boosted == "hello markus"
    # a hotword prefix that does not complete gives its bonus back
    other = BeamSearchDecoder(tokenizer, None, beam=8, hotwords=["markov"],
                              hotword_weight=2.0).decode(log_probs)[0]
    assert other.text == "hello marcus"


def test_lm_fusion_and_lexicon_mode():
    tokenizer = CharTokenizer(["<blank>", " ", *"abcdehklmnorstuy"])
    lm = build_lm([["hello", "markus"], ["hello", "world"]] * 5, order=2)
    log_probs = _spell("hello marcus", tokenizer, {9: {"k": -0.9, "c": -0.6}})
    assert BeamSearchDecoder(tokenizer, lm, beam=8, alpha=1.0, beta=0.0).decode(
        log_probs)[0].text == "hello markus"
    lexicon = BeamSearchDecoder(tokenizer, None, beam=8, lexicon=["hello", "world", "markus"])
    assert lexicon.decode(log_probs)[0].text == "hello markus"
    # A space ends only whole lexicon words: "he" is a prefix of "hello", not a word.
    clipped = _spell("he markus", tokenizer)
    assert BeamSearchDecoder(tokenizer, None, beam=8).decode(clipped)[0].text == "he markus"
    assert lexicon.decode(clipped)[0].text == "markus"
    # A lexicon in another case (a transcript word list) scores its words with the LM's own.
    fused = {words: BeamSearchDecoder(tokenizer, lm, beam=8, alpha=1.0, beta=0.0,
                                      lexicon=words).decode(log_probs)[0]
             for words in (("hello", "markus"), ("HELLO", "Markus"))}
    lower, upper = fused.values()
    assert upper.text == lower.text == "hello markus" and upper.score == lower.score



@pytest.mark.parametrize("lookahead", [False, True])
def test_out_of_vocabulary_prefix_is_penalised_before_the_word_ends(lookahead):
    """With one hypothesis kept per frame, only an early penalty on "marc" (no LM word starts
    so) can steer the search to "markus"; a penalty at the word end would come too late."""
    tokenizer = CharTokenizer(["<blank>", " ", *"abcdehklmnorstuy"])
    lm = build_lm([["hello", "markus"], ["hello", "world"]] * 5, order=2)
    log_probs = _spell("hello marcus", tokenizer, {9: {"k": -0.9, "c": -0.6}})
    decoder = BeamSearchDecoder(tokenizer, lm, beam=1, alpha=0.1, beta=0.0,
                                lookahead=lookahead)
    assert decoder.decode(log_probs)[0].text == "hello markus"
    no_penalty = BeamSearchDecoder(tokenizer, lm, beam=1, alpha=0.1, beta=0.0,
                                   oov_penalty=0.0, oov_char_penalty=0.0, lookahead=lookahead)
    assert no_penalty.decode(log_probs)[0].text == "hello marcus"


def test_unknown_word_does_not_swallow_a_known_one():
    """An unknown word pays its <unk> score once however long it is, so without a cost per
    unknown character the search glues a known word onto it ("zqhello")."""
    tokenizer = CharTokenizer(["<blank>", " ", *"dehlorwqz"])
    lm = build_lm([["hello", "world"], ["world", "hello"]] * 5, order=2)
    log_probs = _spell("zq hello", tokenizer, {2: {" ": -3.0, "<blank>": -0.1}})
    options = dict(beam=8, alpha=1.0, beta=1.0)
    glued = BeamSearchDecoder(tokenizer, lm, oov_char_penalty=0.0, **options)
    assert glued.decode(log_probs)[0].text == "zqhello"
    split = BeamSearchDecoder(tokenizer, lm, **options).decode(log_probs)[0].text
    assert split.split()[-1] == "hello"

def test_word_times_agree_with_forced_alignment(prepared, yesno_model):
    model_dir, _ = yesno_model
    checkpoint = load_checkpoint(model_dir)
    decoder = BeamSearchDecoder(checkpoint.tokenizer, None, beam=8,
                                frame_shift=checkpoint.frame_shift)
    compared = 0
    for entry in read_manifest(prepared["yesno"] / "test.jsonl")[:8]:
        waveform = audio.load(entry.audio, 8000)
        with torch.no_grad():
            features, frames = checkpoint.features(waveform)
            log_probs, lengths = checkpoint.model(features[None], frames[None])
        hypothesis = decoder.decode(log_probs[0], lengths[0])[0]
        if hypothesis.text != entry.text:
            continue
        targets = torch.tensor([hypothesis.tokens], dtype=torch.int32)
        alignment, _ = AF.forced_align(log_probs, targets, blank=0)
        spans = AF.merge_tokens(alignment[0], torch.zeros(alignment.shape[1]))
        groups = checkpoint.tokenizer.group_words(hypothesis.tokens)
        for word, group in zip(hypothesis.words, groups, strict=True):
            start = spans[group[0]].start
            end = spans[group[-1]].end
            assert abs(word.start / checkpoint.frame_shift - start) <= 2
            assert abs(word.end / checkpoint.frame_shift - end) <= 2
            assert 0.0 < word.confidence <= 1.0
        compared += 1
    assert compared >= 4


def test_spawn_workers_give_the_same_results():
    decoder = BeamSearchDecoder(TOKENIZER, build_lm([["ab", "c"], ["a", "bc"]], order=2))
    items = [(_random_log_probs(40, len(TOKENIZER), s, 3.0).numpy(), 40) for s in range(12)]
    sequential = [h[0].text for h in decode_many(decoder, items, workers=1)]
    parallel = [h[0].text for h in decode_many(decoder, items, workers=2)]
    assert parallel == sequential


def test_nbest_is_sorted_and_distinct():
    hypotheses = BeamSearchDecoder(TOKENIZER, None, beam=16, nbest=5).decode(
        _random_log_probs(30, len(TOKENIZER), 3, 2.0))
    scores = [h.score for h in hypotheses]
    assert scores == sorted(scores, reverse=True) and len(hypotheses) == 5
    assert len({tuple(h.tokens) for h in hypotheses}) == 5
    assert np.isfinite(scores).all()


def test_flashlight_backend_shares_the_interface(data_dir):
    pytest.importorskip("flashlight.lib.text")
    from speechrnn.decoding.backends import FlashlightDecoder

    bench = data_dir.parent / "bench"
    data = np.load(bench / "so762_test_logprobs.npz")
    refs = __import__("json").loads((bench / "so762_test_refs.json").read_text())
    tokenizer = CharTokenizer(["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"])
    arpa = bench / "so762_train_3gram.arpa.gz"
    words = sorted(ArpaLM.load(arpa).vocabulary - {"<s>", "</s>"})
    ids = list(data.keys())[:40]
    ours = BeamSearchDecoder(tokenizer, ArpaLM.load(arpa), beam=16)
    theirs = FlashlightDecoder(tokenizer, arpa, lexicon=words, beam=16)
    from speechrnn.scoring import error_rates

    hyps_theirs = []
    for key in ids:
        best = theirs.decode(torch.from_numpy(data[key]))[0]
        assert all(w.upper() in words for w in best.text.split())  # lexicon-constrained
        assert [w.text for w in best.words] == best.text.lower().split()
        hyps_theirs.append(best.text)
    hyps_ours = [ours.decode(data[key])[0].text for key in ids]
    references = [refs[k] for k in ids]
    assert abs(error_rates(references, hyps_theirs)[0] - error_rates(references, hyps_ours)[0]) \
        < 0.15
    # A lexicon in another case than the LM's words is scored with the LM's words.
    lower = FlashlightDecoder(tokenizer, arpa, lexicon=[w.lower() for w in words], beam=16)
    assert [lower.decode(torch.from_numpy(data[key]))[0].text for key in ids[:10]] \
        == hyps_theirs[:10]


def test_lm_words_reads_only_the_unigrams(tmp_path):
    lm = build_lm([["we", "see", "you"], ["we", "go"]], order=3)
    path = tmp_path / "lm.arpa"
    lm.save(path)
    assert lm_words(path) == lm.vocabulary == {"<s>", "</s>", "<unk>", "we", "see", "you", "go"}
    (tmp_path / "lm.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\xff")
    assert lm_words(tmp_path / "lm.bin") is None


def test_tune_lm_picks_the_grid_point_with_the_lowest_dev_wer(prepared, yesno_model, tmp_path):
    """speechrnn tune-lm --json: the weights it writes are the grid's best on dev, and its dev
    WER is what jiwer gives for the Transcriber's output with those weights."""
    import json
    import subprocess
    import sys

    import jiwer

    from speechrnn.cli import main
    from speechrnn.transcriber import Transcriber

    model_dir, _ = yesno_model
    arpa, out = tmp_path / "lm.arpa.gz", tmp_path / "weights.json"
    assert main(["lm", "build", str(prepared["yesno"] / "train.jsonl"), str(arpa),
                 "--order", "2"]) == 0
    dev = prepared["yesno"] / "dev.jsonl"
    def tune(beam: int, jobs: int = 1) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "speechrnn.cli", "tune-lm", "--model", str(model_dir),
             "--lm", str(arpa),
             "--manifest", str(dev), "--beam", str(beam), "--alphas", "0.0", "0.5",
             "--betas", "-30", "0.0", "--blank-penalties", "0", "20", "--jobs", str(jobs),
             "--json", str(out), "--reuse"],
            capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    tuned = tune(4, jobs=2)
    assert "alpha 0.00 beta -30.00 blank penalty 20.00" in tuned  # every grid point printed
    chosen = json.loads(out.read_text())
    # The best beta is the grid's largest, so the "best:" line says to widen the grid; alpha 0
    # is not flagged (no LM weight goes below 0), alpha 0.5 is.
    best_line = tuned.splitlines()[-1]
    assert "beta at the grid's high end" in best_line
    assert ("alpha at the grid's high end" in best_line) == (chosen["alpha"] == 0.5)
    # Reused for the same setup (the note kept); tuned again once the beam changes.
    kept = tune(4)
    assert "kept" in kept and "widen it" in kept and json.loads(out.read_text()) == chosen
    assert "alpha 0.00 beta -30.00" in tune(3) and json.loads(out.read_text())["beam"] == 3
    entries = read_manifest(dev)
    references = [e.text for e in entries]
    dev_wer = {}
    for alpha, beta, penalty in itertools.product([0.0, 0.5], [-30.0, 0.0], [0.0, 20.0]):
        transcriber = Transcriber(model=model_dir, lm=arpa, beam=4, alpha=alpha, beta=beta,
                                  blank_penalty=penalty)
        dev_wer[alpha, beta, penalty] = jiwer.wer(references,
                                                  [transcriber(e.audio).text for e in entries])
    assert chosen["beta"] == 0.0  # a word penalty of 30 nats deletes nearly every word
    # The blank penalty counters deletions: 20 nats per frame a word takes from blank buy
    # back the words that the 30-nat word penalty deleted.
    assert dev_wer[0.0, -30.0, 20.0] < dev_wer[0.0, -30.0, 0.0]
    printed = next(line for line in tuned.splitlines()
                   if line.startswith("alpha 0.00 beta -30.00 blank penalty 20.00"))
    assert float(printed.split("WER")[1].split("%")[0]) == pytest.approx(
        100 * dev_wer[0.0, -30.0, 20.0], abs=0.01)
    key = chosen["alpha"], chosen["beta"], chosen["blank_penalty"]
    assert dev_wer[key] == min(dev_wer.values())
    assert chosen["dev_wer"] == pytest.approx(dev_wer[key])
    assert dev_wer[0.0, -30.0, 0.0] > 0.5


def test_every_decoder_answers_decode_and_decode_batch_with_n_best_lists():
    tokenizer = CharTokenizer.build(["ab ba"])
    torch.manual_seed(3)
    log_probs = torch.log_softmax(torch.randn(2, 12, len(tokenizer)) * 3, -1)
    lengths = torch.tensor([12, 7])
    decoders = [GreedyDecoder(tokenizer), BeamSearchDecoder(tokenizer, beam=4, nbest=2)]
    try:
        from speechrnn.decoding.backends import FlashlightDecoder

        decoders.append(FlashlightDecoder(tokenizer, beam=4))
    except ImportError:
        pass
    for decoder in decoders:
        batch = decoder.decode_batch(log_probs, lengths)
        assert len(batch) == 2 and all(isinstance(nbest, list) and nbest for nbest in batch)
        for row, nbest in enumerate(batch):
            single = decoder.decode(log_probs[row], int(lengths[row]))
            assert [h.text for h in nbest] == [h.text for h in single]


class TableLM:
    """An NgramLM that is not an ArpaLM: the beam search reads the protocol, not a class."""

    def __init__(self, source: ArpaLM):
        self.order, self.ngrams = source.order, [dict(t) for t in source.ngrams]
        self.unk_logprob, self.vocabulary, self.path = source.unk_logprob, source.vocabulary, ""

    def score(self, context, word):
        return ArpaLM(self.ngrams, self.unk_logprob).score(context, word)


def test_the_beam_search_fuses_any_ngram_lm_and_refuses_what_is_not_one():
    arpa = build_lm([["ab", "ba"], ["ba", "ab", "ab"]], order=2)
    assert isinstance(arpa, NgramLM) and isinstance(TableLM(arpa), NgramLM)
    tokenizer = CharTokenizer.build(["ab ba"])
    torch.manual_seed(5)
    log_probs = torch.log_softmax(torch.randn(30, len(tokenizer)) * 2, -1)
    ours = BeamSearchDecoder(tokenizer, arpa, beam=8, alpha=1.0).decode(log_probs)[0]
    other = BeamSearchDecoder(tokenizer, TableLM(arpa), beam=8, alpha=1.0).decode(log_probs)[0]
    assert (ours.text, ours.score) == (other.text, other.score)

    class ScoreOnly:
        order = 2

        def score(self, context, word):
            return -1.0

    with pytest.raises(TypeError, match="n-gram tables"):
        BeamSearchDecoder(tokenizer, ScoreOnly())
