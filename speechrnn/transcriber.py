"""Inference: a checkpoint (or a bundled model) → text with word times, for files of any
length, rate and channel count.

Recordings longer than ``max_segment`` are cut at their pauses (:func:`split_at_pauses`:
every cut depends only on the audio around it) and decoded a few segments at a time, so
memory does not grow with the length of the file beyond the waveform itself; the words are
shifted back to file time. Segments of digital silence are not decoded: they give no words.
Unidirectional models can also stream (:meth:`Transcriber.stream`): audio goes in chunk by
chunk, features and recurrent state are carried over, and partial text comes out as it grows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechrnn import audio
from speechrnn.data.manifest import Entry, load_entry
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.checks import check_beam, check_blank_penalty, check_finite
from speechrnn.decoding.greedy import GreedyDecoder
from speechrnn.decoding.hypothesis import Word
from speechrnn.decoding.lm import ArpaLM
from speechrnn.models.acoustic import StreamState
from speechrnn.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from speechrnn.pretrained import resolve_model

log = logging.getLogger(__name__)
# Decoding for a model without tuned settings in its config.json
DEFAULT_BEAM = 16
DEFAULT_ALPHA = 0.5  # LM weight
DEFAULT_BETA = 1.0  # word insertion bonus
# Segments decoded together: enough to keep the model's batch busy, few enough that the
# features and activations of a long file never exist at once (at most 160 s of audio).
SEGMENT_BATCH = 8
# A segment whose samples all lie within one step of 16-bit audio is digital silence.
SILENCE_PEAK = 1 / 32768


def check_ensemble(checkpoints: Sequence[Checkpoint]) -> None:
    """Models whose posteriors can be averaged: the same output symbols in the same order,
    the same audio rate and the same output frame rate (CheckpointError otherwise)."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        for what, mine, theirs in [
            ("tokenizer", first.tokenizer.to_dict(), other.tokenizer.to_dict()),
            ("sample rate", first.features.config.sample_rate, other.features.config.sample_rate),
            ("output frame shift", first.frame_shift, other.frame_shift),
        ]:
            if mine != theirs:
                raise CheckpointError(f"{other.path}: its {what} differs from {first.path}'s; "
                                      "an ensemble needs the same")


@dataclass
class Transcript:
    """A file's text and words; word times are in seconds, rounded to milliseconds."""

    text: str
    words: list[Word] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio

    def to_dict(self) -> dict:
        return {"text": self.text, "duration": round(self.duration, 3),
                "words": [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                           "confidence": round(w.confidence, 3)} for w in self.words]}


class Transcriber:
    """``Transcriber(model=...)(path_or_array)`` → :class:`Transcript`.

    ``lm``: "default" uses the model folder's ``lm.arpa(.gz)`` when it has one; a path
    uses that ARPA file; None/"none" decodes without LM (greedy when ``beam`` ≤ 1).
    ``lexicon``: when given, the beam search outputs only these words (closed-vocabulary
    tasks such as yes/no or digit strings).
    ``model`` may be a list of checkpoints: an ensemble, whose posteriors are averaged frame by
    frame (see :meth:`log_probs`); the first one's decoding settings and LM apply.
    ``beam``, ``alpha``, ``beta``, ``blank_penalty``: None takes the model's tuned
    ``decoding`` settings (its config.json), else beam 16, alpha 0.5, beta 1.0, blank
    penalty 0 (the tuned beta and blank penalty only with an LM, which they were tuned with).
    """

    def __init__(self, model: str | Path | Sequence[str | Path] | None = None,
                 lm: str | Path | None = "default",
                 beam: int | None = None, alpha: float | None = None,
                 beta: float | None = None, blank_penalty: float | None = None,
                 device: str = "cpu", max_segment: float = 20.0,
                 lexicon: Sequence[str] | None = None):
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device}: CUDA is not available on this machine "
                             "(use the CPU)")
        if not max_segment > 0:
            raise ValueError(f"max_segment must be above 0 seconds, not {max_segment!r}")
        if beam is not None:
            check_beam(beam)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if value is not None:
                check_finite(name, value)
        if blank_penalty is not None:
            check_blank_penalty(blank_penalty)
        names = [model] if model is None or isinstance(model, (str, Path)) else list(model)
        self.checkpoints = [load_checkpoint(resolve_model(name), device) for name in names]
        check_ensemble(self.checkpoints)
        self.checkpoint: Checkpoint = self.checkpoints[0]
        self.device = torch.device(device)
        self.max_segment = max_segment
        self.sample_rate = self.checkpoint.features.config.sample_rate
        decoding = self.checkpoint.config.get("decoding", {})
        beam = decoding.get("beam", DEFAULT_BEAM) if beam is None else beam
        lm_path = self._lm_path(lm)
        frame_shift = self.checkpoint.frame_shift
        tokenizer = self.checkpoint.tokenizer
        if blank_penalty is None:
            blank_penalty = decoding.get("blank_penalty", 0.0) if lm_path is not None else 0.0
        if lm_path is None and beam <= 1 and lexicon is None:
            self.decoder = GreedyDecoder(tokenizer, frame_shift, blank_penalty)
        else:
            self.decoder = BeamSearchDecoder(
                tokenizer, ArpaLM.load(lm_path) if lm_path else None, beam=beam,
                alpha=decoding.get("alpha", DEFAULT_ALPHA) if alpha is None else alpha,
                beta=self._default_beta(decoding, lm_path) if beta is None else beta,
                frame_shift=frame_shift, lexicon=lexicon, blank_penalty=blank_penalty)
        self.lm_path = lm_path
        self.lexicon_size = None if lexicon is None else len(lexicon)
        settings = self.settings()
        log.info("model %s (%s, %d Hz) on %s; LM %s; %s beam %s, alpha %s, beta %s, blank "
                 "penalty %s", settings["model"], self.checkpoint.config.get("description")
                 or "no description", self.sample_rate, self.device, settings["lm"],
                 settings["decoder"], settings["beam"], settings["alpha"], settings["beta"],
                 settings["blank_penalty"])

    @staticmethod
    def _default_beta(decoding: dict, lm_path: Path | None) -> float:
        """The model's tuned word bonus goes with an LM: it was tuned to offset the LM's
        per-word cost. Without an LM nothing is there to offset, and the bonus would only
        push the beam search towards splitting words, so it is 0."""
        return decoding.get("beta", DEFAULT_BETA) if lm_path is not None else 0.0

    def _lm_path(self, lm) -> Path | None:
        if lm is None or str(lm) == "none":
            return None
        if str(lm) == "default":
            for name in ("lm.arpa.gz", "lm.arpa"):
                if (self.checkpoint.path / name).exists():
                    return self.checkpoint.path / name
            return None
        return Path(lm)

    @property
    def unit(self) -> str:
        """What the text holds: "word", or "phone" for a phone model decoded greedily (its
        best path is phones; words come from the lexicon search, any beam above 1)."""
        greedy = isinstance(self.decoder, GreedyDecoder)
        return "phone" if greedy and self.checkpoint.tokenizer.kind == "phone" else "word"

    def reference(self, text: str) -> str:
        """A transcript in the unit of this transcriber's output (see :attr:`unit`)."""
        return self.checkpoint.tokenizer.reference(text) if self.unit == "phone" else text

    def settings(self) -> dict:
        decoder = self.decoder
        paths = [str(checkpoint.path) for checkpoint in self.checkpoints]
        return {"model": paths[0] if len(paths) == 1 else paths,
                "lm": str(self.lm_path or "none"),
                "decoder": type(decoder).__name__, "beam": getattr(decoder, "beam", 1),
                "alpha": getattr(decoder, "alpha", None), "beta": getattr(decoder, "beta", None),
                "blank_penalty": decoder.blank_penalty,
                "lexicon_words": self.lexicon_size, "unit": self.unit}

    def __call__(self, source, sample_rate: int | None = None):
        """Transcribe one input, or a list of them (one result each, in order).

        An input is a file path, an ``(array, sample_rate)`` pair, or a NumPy array or torch
        tensor (mono, or (channels, samples), or soundfile's (samples, channels)) at
        ``sample_rate``. One bad input raises :class:`AudioError` naming it; in a list, a
        bad input's place holds its AudioError instead, and the others are transcribed.
        """
        if isinstance(source, list) and not (source and isinstance(source[0], (int, float))):
            results: list = []  # a list of inputs (a list of numbers is one waveform)
            for number, item in enumerate(source):
                try:
                    results.append(self._one(item, sample_rate, f"input {number}"))
                except audio.AudioError as error:
                    results.append(error)
            return results
        return self._one(source, sample_rate, "input")

    def _one(self, source, sample_rate: int | None, name: str) -> Transcript:
        if isinstance(source, (str, Path)):
            waveform = audio.load(source, self.sample_rate)
            return self.transcribe_waveform(waveform, source)
        if isinstance(source, tuple):
            if len(source) != 2 or isinstance(source[1], bool) or not isinstance(source[1], int):
                raise audio.AudioError(name, "a tuple input must be (array, sample_rate)")
            source, sample_rate = source
        if sample_rate is None:
            raise audio.AudioError(name, "an array needs its sample rate: (array, rate) or "
                                   "sample_rate=")
        try:
            waveform = torch.as_tensor(np.asarray(source, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise audio.AudioError(name, f"not an array of samples ({error})") from None
        if waveform.dim() == 2:  # (channels, samples), or soundfile's (samples, channels)
            channel_axis = 1 if waveform.shape[1] < waveform.shape[0] else 0
            waveform = waveform.mean(channel_axis)
        if waveform.dim() != 1 or waveform.numel() == 0:
            raise audio.AudioError(name, f"expected mono or multichannel samples, got shape "
                                   f"{tuple(waveform.shape)}")
        waveform = audio.resample(waveform, sample_rate, self.sample_rate)
        return self.transcribe_waveform(waveform, name)  # which refuses non-finite samples

    def transcribe_waveform(self, waveform: torch.Tensor, source: str | Path = "waveform",
                            on_progress: Callable[[float, float], None] | None = None
                            ) -> Transcript:
        """Transcribe a mono waveform at the model's rate. ``source`` names it in errors:
        non-finite samples, or posteriors that come out NaN, raise :class:`AudioError`.
        ``on_progress(seconds_done, seconds_total)`` hears after each batch of segments."""
        if not audio.all_finite(waveform):
            raise audio.AudioError(source, "contains NaN or infinite samples")
        duration = waveform.numel() / self.sample_rate
        segments = split_at_pauses(waveform, self.sample_rate, self.max_segment)
        win = max(c.features.analysis.win_length for c in self.checkpoints)
        sounding = [(s, e) for s, e in segments
                    if e - s >= win and float(waveform[s:e].abs().max()) >= SILENCE_PEAK]
        log.info("%s: %.1f s in %d segment(s) of at most %.0f s (%d of digital silence "
                 "skipped)", source, duration, len(sounding), self.max_segment,
                 len(segments) - len(sounding))
        segments = sounding
        texts, words = [], []
        for first in range(0, len(segments), SEGMENT_BATCH):
            batch = segments[first : first + SEGMENT_BATCH]
            log_probs, lengths = self.log_probs([waveform[s:e] for s, e in batch])
            if torch.isnan(log_probs).any():
                raise audio.AudioError(source, "the model's output is NaN for this audio "
                                       "(samples far outside [-1, 1]?)")
            for i, (start_sample, _) in enumerate(batch):
                start = start_sample / self.sample_rate
                best = self.decoder.decode(log_probs[i], lengths[i])[0]
                if best.text:
                    texts.append(best.text)
                words += [Word(w.text, round(w.start + start, 3),
                               round(min(w.end + start, duration), 3), w.confidence)
                          for w in best.words]
            if on_progress is not None:
                on_progress(batch[-1][1] / self.sample_rate, duration)
        return Transcript(" ".join(texts), words, duration)

    def log_probs(self, waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Model posteriors for a list of waveforms, as one padded batch: (B, T, V) log
        probabilities and (B,) frame counts. An ensemble's are the log of its members' mean
        probabilities (each member with its own features and normalisation)."""
        lengths = torch.tensor([w.numel() for w in waveforms])
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True).to(self.device)
        members, counts = [], None
        with torch.inference_mode():
            for checkpoint in self.checkpoints:
                features, frames = checkpoint.features(padded, lengths)
                log_probs, out_lengths = checkpoint.model(features, frames)
                members.append(log_probs.float().cpu())
                if counts is not None and not torch.equal(out_lengths.cpu(), counts):
                    raise CheckpointError(f"{checkpoint.path}: its output frame counts differ "
                                          "from the first model's; it cannot join the ensemble")
                counts = out_lengths.cpu()
        if len(members) == 1:
            return members[0], counts
        return torch.logsumexp(torch.stack(members), 0) - math.log(len(members)), counts

    def manifest_log_probs(self, entries: Sequence[Entry], batch: int = 32
                           ) -> list[torch.Tensor]:
        """(T, V) log-probabilities of every manifest entry (its segment when it has an
        offset), computed in padded batches of ``batch`` utterances; for tuning and
        benchmarks that decode the same posteriors many times."""
        results = []
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            log_probs, lengths = self.log_probs([load_entry(e, self.sample_rate) for e in chunk])
            results += [log_probs[i, : int(lengths[i])] for i in range(len(chunk))]
        return results

    def stream(self) -> StreamingSession:
        """A streaming session (unidirectional models only; raises ValueError otherwise)."""
        if len(self.checkpoints) > 1:
            raise ValueError("streaming decodes one model, not an ensemble")
        self.checkpoint.model.check_streamable()
        return StreamingSession(self)

    def transcribe_streaming(self, waveform: torch.Tensor, chunk_seconds: float = 0.5,
                             on_partial=None) -> Transcript:
        """Feed ``waveform`` through a streaming session in ``chunk_seconds`` pieces, calling
        ``on_partial(text)`` after each; the result equals offline decoding of the whole
        waveform (no pause splitting is needed: the state carries across the file)."""
        session = self.stream()
        step = max(1, int(chunk_seconds * self.sample_rate))
        for start in range(0, waveform.numel(), step):
            partial = session.accept(waveform[start : start + step])
            if on_partial is not None:
                on_partial(partial)
        return session.finish()


class StreamingSession:
    """Chunks of audio at the model's sample rate in, partial (best-path) text out;
    :meth:`finish` decodes everything with the transcriber's decoder (beam + LM)."""

    def __init__(self, transcriber: Transcriber):
        self.transcriber = transcriber
        self.extractor = transcriber.checkpoint.features
        self.samples = torch.zeros(0)
        self.seen = 0  # samples received
        self.state: StreamState | None = None
        self.chunks: list[torch.Tensor] = []
        self.best_path: list[int] = []  # collapsed best-path tokens so far (partial text)
        self.previous = 0  # best token of the last frame (blank at the start)

    def _features(self) -> torch.Tensor:
        """Feature frames of the buffered samples that are complete; the rest waits (frames
        overlap, so a frame's last samples may arrive with the next chunk)."""
        analysis = self.extractor.analysis
        frames = int(self.extractor.num_frames(torch.tensor([self.samples.numel()]))[0])
        if frames == 0:
            return torch.zeros(1, 0, self.extractor.dim)
        used = (frames - 1) * analysis.hop_length + analysis.win_length
        device = self.transcriber.device
        features, _ = self.extractor(self.samples[None, :used].to(device),
                                     torch.tensor([used]))
        self.samples = self.samples[frames * analysis.hop_length :]
        return features

    def _step(self, final: bool) -> None:
        with torch.inference_mode():
            features = self._features()
            log_probs, self.state = self.transcriber.checkpoint.model.stream(
                features, self.state, final)
        self.chunks.append(log_probs[0].float().cpu())
        blank = self.transcriber.checkpoint.tokenizer.blank_id
        for token in self.chunks[-1].argmax(dim=-1).tolist():
            if token != self.previous and token != blank:
                self.best_path.append(token)
            self.previous = token

    def accept(self, chunk: torch.Tensor | np.ndarray) -> str:
        """Add mono samples; returns the best-path text of everything so far."""
        chunk = torch.as_tensor(np.asarray(chunk), dtype=torch.float32).reshape(-1)
        self.samples = torch.cat([self.samples, chunk])
        self.seen += chunk.numel()
        self._step(final=False)
        return self.transcriber.checkpoint.tokenizer.decode(self.best_path)

    def log_probs(self) -> torch.Tensor:
        """(T, V) log-probabilities of all output frames so far."""
        return torch.cat(self.chunks) if self.chunks else torch.zeros(0, 0)

    def finish(self) -> Transcript:
        """Flush the held-back frames and decode the whole stream."""
        self._step(final=True)
        log_probs = self.log_probs()
        duration = self.seen / self.transcriber.sample_rate
        if len(log_probs) == 0:
            return Transcript("", [], duration)
        best = self.transcriber.decoder.decode(log_probs, len(log_probs))[0]
        words = [Word(w.text, round(w.start, 3), round(min(w.end, duration), 3), w.confidence)
                 for w in best.words]
        return Transcript(best.text, words, duration)


# Cutting long audio: a pause is at least PAUSE_S of 10 ms frames quieter than PAUSE_DB
# below the loudest frame within LOUDNESS_WINDOW_S around them. Every quantity is local, so
# the same stretch of speech is cut, normalised and decoded alike wherever it lies in a file.
PAUSE_S = 0.5
PAUSE_DB = 30.0
LOUDNESS_WINDOW_S = 6.0
# A segment reaches this far beyond the sound at each pause (sound: mean power over 10 ms
# above SOUND_POWER, -70 dBFS, an absolute level, so the edge is found alike anywhere),
# sought within PAUSE_SEARCH_S of the pause's middle.
SPEECH_MARGIN_S = 0.2
SOUND_POWER = 1e-7
PAUSE_SEARCH_S = 2.0


def split_at_pauses(waveform: torch.Tensor, sample_rate: int, max_segment: float
                    ) -> list[tuple[int, int]]:
    """(start, end) sample ranges in order, no longer than ``max_segment`` seconds, split at
    every pause: each segment reaches SPEECH_MARGIN_S past the sound on either side of a
    pause (the samples between, silence, are left out), so where it starts is set by its
    own speech. A longer stretch without a pause is halved at its quietest 10 ms frame
    near the middle, again until every part fits. Nothing depends on where earlier cuts
    fell, so the same speech is cut alike wherever it lies in a file."""
    total = waveform.numel()
    hop = sample_rate // 100
    limit = int(max_segment * sample_rate)
    if total <= limit:  # one utterance, as the model was trained on: decoded whole
        return [(0, total)]
    frames = waveform[: total - total % hop].reshape(-1, hop)
    # in pieces of 100 s, so that no full-length copy of the waveform is ever made
    energy = torch.cat([piece.square().mean(1) for piece in frames.split(10000)])
    window = int(LOUDNESS_WINDOW_S * 100) | 1
    loudest = torch.nn.functional.max_pool1d(energy[None, None], window, 1,
                                             window // 2)[0, 0]
    quiet = energy <= loudest * 10 ** (-PAUSE_DB / 10)
    cuts = []
    for first, last in _runs(quiet):  # pauses inside the file, not at its ends
        if (last - first) * hop >= PAUSE_S * sample_rate and first > 0 and last < len(quiet):
            middle = _pause_middle(waveform, first * hop, last * hop, hop)
            cuts.append(_around_pause(waveform, middle, sample_rate))
    starts = [0] + [after for _, after in cuts]
    ends = [before for before, _ in cuts] + [total]
    segments: list[tuple[int, int]] = []
    for start, end in zip(starts, ends, strict=True):
        segments += _halve(start, end, limit, energy, hop)
    return segments


def _around_pause(waveform: torch.Tensor, middle: int, sample_rate: int) -> tuple[int, int]:
    """(end of the segment before, start of the segment after) a pause whose middle is
    ``middle``: SPEECH_MARGIN_S beyond the last and first sample of sound (mean power over
    10 ms above SOUND_POWER) within PAUSE_SEARCH_S of it, never past the middle."""
    hop, margin = sample_rate // 100, int(SPEECH_MARGIN_S * sample_rate)
    reach = int(PAUSE_SEARCH_S * sample_rate)
    low, high = max(0, middle - reach), min(waveform.numel(), middle + reach)
    sound = (_sliding_power(waveform[low:high], hop) > SOUND_POWER).nonzero().flatten() + low
    before, after = sound[sound + hop <= middle], sound[sound >= middle]
    end = min(middle, int(before[-1]) + hop + margin) if len(before) else middle
    start = max(middle, int(after[0]) - margin) if len(after) else middle
    return end, start


def _pause_middle(waveform: torch.Tensor, start: int, end: int, hop: int) -> int:
    """The middle of the longest stretch of [start, end) where the mean power over ``hop``
    samples (a window sliding sample by sample, not the frame grid) is at its minimum:
    defined by the pause's own samples, so a pause is cut at the same sample of its audio
    wherever it lies in a file (in digital silence: the middle of the silence)."""
    sliding = _sliding_power(waveform[start:end], hop)
    lowest = float(sliding.min())
    runs = _runs(sliding <= lowest + 1e-12 + 1e-6 * lowest)
    if not runs:
        return (start + end) // 2
    first, last = max(runs, key=lambda run: run[1] - run[0])  # the first of the longest
    return start + (first + last + hop) // 2  # a window starts hop/2 before its centre


def _sliding_power(samples: torch.Tensor, window: int) -> torch.Tensor:
    """Mean power over ``window`` samples starting at each sample (a window sliding sample by
    sample, so it is set by the audio itself and not by a frame grid)."""
    sums = torch.nn.functional.pad(samples.double().square().cumsum(0), (1, 0))
    return (sums[window:] - sums[:-window]) / window


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) index ranges of the runs of True in a 1-D boolean tensor."""
    edges = torch.diff(torch.nn.functional.pad(mask.to(torch.int8), (1, 1))).nonzero()[:, 0]
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _halve(start: int, end: int, limit: int, energy: torch.Tensor, hop: int
           ) -> list[tuple[int, int]]:
    """[start, end) cut at its quietest frame within the middle third until every part is
    at most ``limit`` samples long."""
    if end - start <= limit:
        return [(start, end)]
    low = (start + (end - start) // 3) // hop
    high = max(low + 1, (end - (end - start) // 3) // hop)
    cut = (low + int(torch.argmin(energy[low:high]))) * hop
    return _halve(start, cut, limit, energy, hop) + _halve(cut, end, limit, energy, hop)
