"""Training set-up: everything a run needs, resolved from a TrainConfig — devices and ranks,
manifests, tokenizer, CMVN, the audio cache, augmentation, datasets and the model — without
changing the caller's config (the resolved copy is returned with the rest)."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from speechrnn import audio
from speechrnn.augment import VTLP, AddNoise, BandLimit, SpecAugment, SpeedPerturb, cepstral_basis
from speechrnn.data.dataset import ASRDataset, AudioCache, collate, manifest_cmvn, preload_audio
from speechrnn.data.manifest import Entry, read_manifest
from speechrnn.data.sampler import BucketingSampler
from speechrnn.features import FeatureConfig, GlobalCMVN, UtteranceCMVN, build_features, load_cmvn
from speechrnn.fileio import input_problem
from speechrnn.models import checkpoint as ckpt
from speechrnn.models.acoustic import AcousticModel, ModelConfig
from speechrnn.pretrained import resolve_model
from speechrnn.text import (
    BPETokenizer,
    CharTokenizer,
    PhoneTokenizer,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    save_tokenizer,
)
from speechrnn.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """A run's resolved parts. ``config`` is a copy with what the set-up fills in (the
    model's input and output sizes; a fine-tuned checkpoint's model and features)."""

    config: TrainConfig
    device: torch.device
    rank: int
    world_size: int
    train_entries: list[Entry]
    dev_entries: list[Entry]
    features: torch.nn.Module
    tokenizer: Tokenizer
    model: AcousticModel  # CMVN attached, initial weights loaded when fine-tuning
    audio_cache: AudioCache | None
    specaugment: SpecAugment | None
    vtlp: VTLP | None
    train_set: ASRDataset
    sampler: BucketingSampler

    def frames(self, seconds: float) -> int:
        """Feature frames of ``seconds`` of audio (for length bucketing)."""
        return max(1, int(seconds / self.features.frame_shift))

    def dataset(self, entries: list[Entry], train: bool) -> ASRDataset:
        """Features computed in the loader's workers on CPU; on GPU the workers only load
        (and, for training, perturb) audio, and features are computed on the device."""
        return make_dataset(self.config, entries, self.tokenizer, train, self.device,
                            self.audio_cache)

    def loader(self, dataset: ASRDataset, sampler, epoch: int) -> DataLoader:
        workers = self.config.data.num_workers
        # Its own generator: a DataLoader iterator otherwise draws its seed from the global
        # RNG, which would shift the dropout masks of a resumed run.
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                          num_workers=workers, pin_memory=self.device.type == "cuda",
                          prefetch_factor=4 if workers else None, generator=generator)


def distributed() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def resolve_device(wanted: str) -> torch.device:
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda: CUDA is not available on this machine (set "
                             "device: cpu or auto)")
        index = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def manifest_paths(setting: str | list[str]) -> list[str]:
    """``data.train``/``data.dev`` as a list: one manifest or several."""
    return [setting] if isinstance(setting, str) else list(setting)


def read_split(config: TrainConfig, path: str, split: str) -> list[Entry]:
    """One manifest's usable entries; training utterances over ``max_duration`` are
    skipped (reported)."""
    if not path:
        raise ValueError(f"data.{split} (a manifest path) is not set")
    entries = read_manifest(path)
    if split == "train":
        limit = config.data.max_duration
        kept = [e for e in entries if e.duration <= limit]
        if len(kept) < len(entries):
            log.warning("skipping %d training utterances longer than %.0f s",
                        len(entries) - len(kept), limit)
        entries = kept
    if not entries:
        raise ValueError(f"{path}: no usable utterances for {split}")
    return entries


def training_entries(config: TrainConfig) -> list[Entry]:
    """The training manifests' entries, each manifest repeated ``train_repeat`` times
    (repeats get ids ending in ``#2``, ``#3``... so that ids stay unique)."""
    options = config.data
    paths = manifest_paths(options.train)
    repeats = options.train_repeat or [1] * len(paths)
    if len(repeats) != len(paths) or min(repeats) < 1:
        raise ValueError(f"data.train_repeat {repeats} needs one count >= 1 per manifest "
                         f"in data.train ({len(paths)})")
    entries = []
    for path, repeat in zip(paths, repeats, strict=True):
        read = read_split(config, path, "train")
        entries += read
        entries += [replace(e, id=f"{e.id}#{copy_number}")
                    for copy_number in range(2, repeat + 1) for e in read]
    return entries


def warn_rate_mismatch(entries: list[Entry], feature_rate: int, sample: int = 20) -> None:
    """Warn when training audio is at another rate than the features (8 kHz audio under
    16 kHz features is resampled up and trains on an empty upper band): the first
    ``sample`` distinct files are checked from their headers."""
    rates: dict[int, str] = {}
    for entry in list(dict.fromkeys(e.audio for e in entries))[:sample]:
        try:
            rates.setdefault(audio.info(entry).samplerate, entry)
        except audio.AudioError:
            continue  # reported where the audio is read
    for rate, example in rates.items():
        if rate != feature_rate:
            log.warning("training audio at %d Hz (e.g. %s) but features.sample_rate is %d Hz: "
                        "it is resampled; set features.sample_rate: %d to train at its own rate",
                        rate, example, feature_rate, rate)


def configured_cmvn(config: TrainConfig, entries: list[Entry], max_utterances: int | None = None,
                    audio_cache: AudioCache | None = None) -> GlobalCMVN | UtteranceCMVN:
    """The normaliser ``config.cmvn`` asks for: per-utterance (nothing to compute), or global
    statistics over up to ``max_utterances`` (default ``config.cmvn_utterances``) entries,
    reading waveforms from ``audio_cache`` where it has them."""
    if config.cmvn == "utterance":
        return UtteranceCMVN()
    if config.cmvn != "global":
        raise ValueError(f"cmvn must be global or utterance, not {config.cmvn!r}")
    return manifest_cmvn(entries, config.features, max_utterances or config.cmvn_utterances,
                         audio_cache)


def make_dataset(config: TrainConfig, entries: list[Entry], tokenizer: Tokenizer, train: bool,
                 device: torch.device, audio_cache: AudioCache | None) -> ASRDataset:
    options = config.augment
    waveform_transforms = []
    rate = config.features.sample_rate
    if train and options.speed_perturb:
        waveform_transforms.append(SpeedPerturb(options.speed_perturb, rate))
    if train and options.noise_snr:
        waveform_transforms.append(AddNoise(tuple(options.noise_snr)))
    if train and options.band_limit_prob > 0:
        waveform_transforms.append(BandLimit(options.band_limit_rate,
                                             options.band_limit_prob, rate))
    return ASRDataset(
        entries, tokenizer, rate,
        extractor=None if device.type == "cuda" else build_features(config.features),
        waveform_transforms=waveform_transforms,
        dither=config.features.dither if train else 0.0, seed=config.seed,
        audio_cache=audio_cache)


def _initial_checkpoint(config: TrainConfig) -> ckpt.Checkpoint | None:
    """The checkpoint named by ``init_from``; its model shape and features replace the
    config's (in place: ``config`` is the set-up's own copy) so the weights fit."""
    if not config.init_from:
        return None
    initial = ckpt.load_checkpoint(resolve_model(config.init_from))
    config.model = ModelConfig(**initial.config["model"])
    config.features = FeatureConfig(**initial.config["features"])
    return initial


def _tokenizer(config: TrainConfig, outdir: Path, resume: bool, entries: list[Entry],
               initial: ckpt.Checkpoint | None, rank: int) -> Tokenizer:
    """The run folder's tokenizer when it has one (a resumed run), else one built from the
    training transcripts (or the fine-tuned checkpoint's), saved there."""
    saved = outdir / "tokenizer.json"
    if saved.exists():
        return load_tokenizer(saved)
    if resume:
        raise ckpt.CheckpointError(f"{saved} missing: nothing to resume in {outdir}")
    options = config.tokenizer
    texts = [e.text for e in entries]
    if initial is not None:
        tokenizer = initial.tokenizer
    elif options.kind == "bpe":
        tokenizer = BPETokenizer.build(texts, options.vocab_size, options.case)
    elif options.kind == "phone":
        for path in options.lexicons:
            if problem := input_problem(path):
                raise ValueError(f"tokenizer.lexicons: {path} {problem}")
        tokenizer = PhoneTokenizer.build(texts, options.lexicons,
                                         "skip" if options.oov == "skip" else "error",
                                         options.case)
    else:
        tokenizer = CharTokenizer.build(texts, options.oov, options.case)
    if rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tokenizer, saved)
    return tokenizer


def _encodable(entries: list[Entry], tokenizer: Tokenizer, split: str) -> list[Entry]:
    """The entries whose transcripts the tokenizer can encode (a phone tokenizer lacks
    pronunciations of some words); the others are left out and counted in the log."""
    kept, left_out = [], []
    for entry in entries:
        try:
            tokenizer.encode(entry.text)
        except TokenizerError as error:
            left_out.append(f"{entry.id} ({error})")
            continue
        kept.append(entry)
    if left_out:
        log.warning("%d %s utterances left out, their transcripts cannot be tokenized: %s%s",
                    len(left_out), split, ", ".join(left_out[:3]),
                    " ..." if len(left_out) > 3 else "")
    return kept


def _cmvn(config: TrainConfig, outdir: Path, entries: list[Entry],
          initial: ckpt.Checkpoint | None, audio_cache: AudioCache | None,
          rank: int) -> GlobalCMVN | UtteranceCMVN:
    """Per-utterance normalisation, or global CMVN from up to ``cmvn_utterances`` training
    utterances (computed once, saved in the output folder; every rank computes the same
    statistics deterministically). A fine-tuned model keeps its checkpoint's."""
    if initial is not None:
        return initial.model.cmvn
    saved = outdir / "cmvn.json"
    if config.cmvn == "global" and saved.exists():
        # A per-utterance file (`speechrnn cmvn` with a cmvn: utterance config) is replaced.
        cmvn = load_cmvn(saved)
        if isinstance(cmvn, GlobalCMVN):
            return cmvn
    cmvn = configured_cmvn(config, entries, audio_cache=audio_cache)
    if isinstance(cmvn, GlobalCMVN) and rank == 0:
        cmvn.save(saved)
    return cmvn


def _preload(config: TrainConfig, entries: list[Entry]) -> AudioCache:
    """Every train and dev waveform, decoded once (data.cache_audio)."""
    started = time.time()
    rate = config.features.sample_rate
    cache = preload_audio(entries, rate,
                          threads=max(config.data.num_workers, torch.get_num_threads()))
    samples = sum(waveform.numel() for waveform in cache.values())
    log.info("cached %d waveforms (%.2f h, %.0f MB) in %.0f s", len(cache),
             samples / rate / 3600, samples * 4 / 2**20, time.time() - started)
    return cache


def _mask_basis(config: TrainConfig) -> torch.Tensor | None:
    """The DCT that lets SpecAugment mask the mel bands behind cepstra, or None."""
    domain = config.augment.freq_mask_domain
    if domain == "features":
        return None
    if domain == "mel":
        return cepstral_basis(config.features)
    raise ValueError(f"augment.freq_mask_domain must be 'features' or 'mel', not {domain!r}")


def prepare_training(config: TrainConfig, outdir: str | Path, resume: bool = False
                     ) -> TrainingSetup:
    """Resolve every part of a run into ``outdir`` from ``config`` (left unchanged)."""
    config = copy.deepcopy(config)
    outdir = Path(outdir)
    rank, world_size = distributed()
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    train_entries = training_entries(config)
    dev_entries = [e for path in manifest_paths(config.data.dev) if path
                   for e in read_split(config, path, "dev")]
    initial = _initial_checkpoint(config)
    warn_rate_mismatch(train_entries, config.features.sample_rate)
    features = build_features(config.features)
    tokenizer = _tokenizer(config, outdir, resume, train_entries, initial, rank)
    train_entries = _encodable(train_entries, tokenizer, "training")
    dev_entries = _encodable(dev_entries, tokenizer, "dev")
    config.model.input_dim = features.dim
    config.model.vocab_size = len(tokenizer)
    model = AcousticModel(config.model)
    if any(not 1 <= layer < config.model.layers for layer in config.inter_ctc_layers):
        raise ValueError(f"inter_ctc_layers {list(config.inter_ctc_layers)}: each must be a "
                         f"recurrent layer below the last (1 to {config.model.layers - 1})")
    # Before the CMVN pass, which then reads the cached waveforms instead of decoding them.
    audio_cache = _preload(config, train_entries + dev_entries) \
        if config.data.cache_audio else None
    model.cmvn = _cmvn(config, outdir, train_entries, initial, audio_cache, rank)
    if initial is not None and not resume:  # a resumed run restores its own weights
        model.load_state_dict(initial.model.state_dict())
    model.to(device)
    features.to(device)
    options = config.augment
    # Switched on per epoch by the loop (augment.specaugment_from_epoch).
    specaugment = SpecAugment(
        options.freq_masks, options.freq_width, options.time_masks, options.time_width,
        fill=options.specaugment_fill, cepstral_basis=_mask_basis(config)) \
        if options.specaugment else None
    vtlp = VTLP.for_features(config.features, tuple(options.vtlp)) if options.vtlp else None
    train_set = make_dataset(config, train_entries, tokenizer, True, device, audio_cache)
    frame_shift = features.frame_shift
    frames = [max(1, int(e.duration / frame_shift)) for e in train_set.entries]
    sampler = BucketingSampler(
        frames, config.data.max_frames, shuffle=True, seed=config.seed,
        num_replicas=world_size, rank=rank, max_batch_size=config.data.max_batch_size)
    return TrainingSetup(config, device, rank, world_size, train_entries, dev_entries,
                         features, tokenizer, model, audio_cache, specaugment, vtlp,
                         train_set, sampler)
