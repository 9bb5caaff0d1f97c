"""CTC training on real speech (yesno): loss, convergence, resume, DDP, checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import stat
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn.utils.rnn import pad_sequence

from speechrnn import audio
from speechrnn.augment import SpecAugment
from speechrnn.data import ASRDataset, collate, read_manifest
from speechrnn.data.dataset import Batch
from speechrnn.decoding import greedy_ids
from speechrnn.models.checkpoint import CheckpointError, average_checkpoints, load_checkpoint
from speechrnn.scoring import error_rates
from speechrnn.training import load_config
from speechrnn.training.config import to_dict
from speechrnn.training.schedules import Newbob, multiplier
from speechrnn.training.trainer import Trainer, ctc_batch_loss
from speechrnn.transcriber import Transcriber


def yesno_config(prepared, *overrides):
    base = [
        f"data.train={prepared['yesno'] / 'train.jsonl'}",
        f"data.dev={prepared['yesno'] / 'dev.jsonl'}",
        "data.max_frames=4000", "data.num_workers=0",
        "features.n_mels=40", "features.sample_rate=8000",
        "model.hidden=64", "model.layers=2", "model.dropout=0.0",
        "optim.lr=0.005", "optim.warmup_steps=5", "progress=false", "log_every=1",
    ]
    return load_config(None, base + list(overrides))


def decode_manifest(model_dir, manifest):
    checkpoint = load_checkpoint(model_dir)
    entries = read_manifest(manifest)
    dataset = ASRDataset(entries, checkpoint.tokenizer,
                         checkpoint.features.config.sample_rate, extractor=checkpoint.features)
    batch = collate([dataset[i] for i in range(len(entries))])
    with torch.no_grad():
        log_probs, lengths = checkpoint.model(batch.inputs, batch.input_lengths)
    hyps = [checkpoint.tokenizer.decode(ids) for ids in greedy_ids(log_probs, lengths)]
    return error_rates(batch.texts, hyps)[0]


# Test recording 0_1_0_1_0_0_0_0 holds seven spoken words, not the eight of its label: seven
# sounding stretches at every threshold from 10 to 30 dB, then a second of silence (RESULTS.md).
SEVEN_WORDS = "0_1_0_1_0_0_0_0"


def test_yesno_trains_to_the_spoken_words_within_two_minutes(prepared, yesno_model):
    model_dir, seconds = yesno_model
    test = prepared["yesno"] / "test.jsonl"
    assert decode_manifest(model_dir, test) <= 2 / 240  # greedy: at most one slip besides
    assert seconds < 120
    # Decoding restricted to the two words (as the recipe does) gets every spoken word.
    transcriber = Transcriber(model_dir, lm=None, beam=4, lexicon=["yes", "no"])
    for entry in read_manifest(test):
        spoken = entry.text.split()[:7] if entry.id == SEVEN_WORDS else entry.text.split()
        assert transcriber(entry.audio).text.split() == spoken, entry.id


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_cell_and_direction_learns(prepared, tmp_path, cell, bidirectional):
    config = yesno_config(prepared, f"model.cell={cell}",
                          f"model.bidirectional={str(bidirectional).lower()}",
                          "max_steps=40", "epochs=100", "data.dev=", "optim.schedule=constant")
    assert config.data.dev == ""  # an empty --set value is YAML's null: no dev set
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    losses = [float(row.split(",")[2]) for row in
              (tmp_path / "train.csv").read_text().splitlines()[1:]]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last <= 0.5 * first, (cell, bidirectional, first, last)



def test_fine_tuning_starts_from_the_checkpoint(prepared, yesno_model, tmp_path):
    """init_from: the checkpoint's shape, features, tokenizer and CMVN replace the config's
    (here deliberately different), and training starts from its weights."""
    model_dir, _ = yesno_model
    reference = load_checkpoint(model_dir)
    config = yesno_config(prepared, f"init_from={model_dir}", "model.hidden=32",
                          "features.n_mels=80", "max_steps=3", "optim.lr=1e-4",
                          "optim.schedule=constant")
    trainer = Trainer(config, tmp_path / "finetune")
    assert trainer.config.model.hidden == 64 and trainer.features.dim == 40
    assert trainer.tokenizer.symbols == reference.tokenizer.symbols
    assert torch.equal(trainer.model.cmvn.mean, reference.model.cmvn.mean)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    trainer.fit()
    scratch = Trainer(yesno_config(prepared, "max_steps=3"), tmp_path / "scratch")
    scratch.fit()
    def first_loss(outdir):
        return float((outdir / "train.csv").read_text().splitlines()[1].split(",")[2])
    assert first_loss(tmp_path / "finetune") < 0.1 * first_loss(tmp_path / "scratch")


def test_global_cmvn_replaces_a_per_utterance_file_in_the_output_folder(prepared, tmp_path):
    """A cmvn.json that records the per-utterance mode (left by a config that used it) is not
    taken as the statistics of a global-CMVN run: they are computed and the file replaced."""
    (tmp_path / "cmvn.json").write_text('{"mode": "utterance"}')
    trainer = Trainer(yesno_config(prepared, "cmvn=global"), tmp_path)
    saved = json.loads((tmp_path / "cmvn.json").read_text())
    assert saved["count"] > 0 and len(saved["mean"]) == 40
    assert torch.allclose(trainer.model.cmvn.mean, torch.tensor(saved["mean"]))
    assert Trainer(yesno_config(prepared, "cmvn=utterance"), tmp_path / "u").model.cmvn.to_dict() \
        == {"mode": "utterance"}


def test_training_mixes_manifests_with_repeats(prepared, tmp_path):
    """data.train as a list with train_repeat: every manifest's entries, the repeated ones
    under new unique ids; a count per manifest is required."""
    train, dev = prepared["yesno"] / "train.jsonl", prepared["yesno"] / "dev.jsonl"
    config = yesno_config(prepared, f"data.train=[{train}, {dev}]", "data.train_repeat=[1, 3]")
    entries = Trainer(config, tmp_path / "mix").train_entries
    train_ids = [e.id for e in read_manifest(train)]
    dev_ids = [e.id for e in read_manifest(dev)]
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids)) == len(train_ids) + 3 * len(dev_ids)
    assert sorted(i.split("#")[0] for i in ids) == sorted(train_ids + 3 * dev_ids)
    bad = yesno_config(prepared, f"data.train=[{train}, {dev}]", "data.train_repeat=[2]")
    with pytest.raises(ValueError, match="train_repeat"):
        Trainer(bad, tmp_path / "bad")


def test_ctc_loss_equals_direct_computation_and_skips_bad_targets(prepared, tmp_path):
    trainer = Trainer(yesno_config(prepared), tmp_path)
    batch = collate([trainer.train_set[i] for i in range(4)])
    batch.targets[2].zero_()
    batch.target_lengths[2] = 0  # empty transcript
    batch.target_lengths[3] = 10_000  # longer than the output
    batch.targets = torch.nn.functional.pad(batch.targets, (0, 10_000))
    torch.manual_seed(0)
    log_probs, lengths = trainer.model(batch.inputs, batch.input_lengths)
    total, used, skipped = ctc_batch_loss(log_probs, lengths, batch)
    assert (used, skipped) == (2, 2)
    direct = torch.nn.functional.ctc_loss(
        log_probs[:2].transpose(0, 1), batch.targets[:2, : int(batch.target_lengths[:2].max())],
        lengths[:2], batch.target_lengths[:2], reduction="sum")
    assert float(total.detach()) == pytest.approx(float(direct.detach()), rel=1e-5)
    assert torch.isfinite(total)


def test_an_overflowing_fp16_step_changes_neither_weights_nor_schedule(prepared, tmp_path):
    """GradScaler's overflow (here forced by a huge loss scale on CPU) skips the update; the
    LR schedule must not advance past an optimizer that has not stepped (torch warns)."""
    trainer = Trainer(yesno_config(prepared), tmp_path)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1e38)
    batch = next(iter(trainer.batches()))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train_step(batch)
        trainer.optimizer_step()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.scheduler.last_epoch == 0 and trainer.step == 1
    assert trainer.scaler.get_scale() == pytest.approx(0.5e38)
    assert trainer.skipped_total == 0  # an overflow is not a bad batch
    trainer.scaler.update(new_scale=1.0)
    trainer.train_step(batch)
    trainer.optimizer_step()
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.scheduler.last_epoch == 1 and trainer.step == 2


def test_the_trainer_resolves_a_copy_and_leaves_the_callers_config_alone(prepared, tmp_path):
    config = yesno_config(prepared, "epochs=1")
    before = to_dict(config)
    trainer = Trainer(config, tmp_path)
    assert to_dict(config) == before  # input_dim and vocab_size are filled in the copy
    assert trainer.config.model.vocab_size == len(trainer.tokenizer) != config.model.vocab_size
    assert trainer.config.model.input_dim == 40


def test_k_accumulated_steps_of_one_batch_leave_the_gradient_of_one_step(prepared, tmp_path):
    """The loss of each accumulated step is divided by accum_steps, so k passes over the same
    batch sum to exactly the gradient of one pass (twice it, if the division were lost)."""
    gradients = {}
    for accum in (1, 2, 3):
        trainer = Trainer(yesno_config(prepared, f"optim.accum_steps={accum}", "seed=0"),
                          tmp_path / f"accum{accum}")
        batch = next(iter(trainer.batches()))
        for _ in range(accum):
            trainer.train_step(batch)
        gradients[accum] = {name: p.grad.clone() for name, p in trainer.model.named_parameters()
                            if p.grad is not None}
    assert gradients[1]
    for accum in (2, 3):
        for name, grad in gradients[1].items():
            torch.testing.assert_close(gradients[accum][name], grad, rtol=1e-3, atol=1e-5)


def test_bf16_autocast_runs_and_trains_on_the_cpu(prepared, tmp_path, caplog):
    """amp: bf16 runs the recurrent layers in bf16 on a CPU, close to fp32, and hands out
    fp32 log-probabilities (CPU autocast alone keeps log_softmax in bf16); a short bf16
    training halves the loss. amp: fp16 on a CPU says that it trains in fp32."""
    fp32 = Trainer(yesno_config(prepared), tmp_path / "fp32")
    bf16 = Trainer(yesno_config(prepared, "amp=bf16", "max_steps=40", "epochs=100", "data.dev=",
                                "optim.schedule=constant"), tmp_path / "bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())
    batch = next(iter(fp32.batches()))
    outputs = {}
    for name, trainer in (("fp32", fp32), ("bf16", bf16)):
        features, lengths = trainer.inputs(batch, train=False)
        with torch.no_grad(), trainer.autocast():
            outputs[name], _ = trainer.model(features, lengths)
    assert outputs["bf16"].dtype == torch.float32
    assert torch.allclose(outputs["bf16"].exp().sum(-1), torch.ones(()), atol=1e-5)
    difference = float((outputs["bf16"] - outputs["fp32"]).abs().max())
    assert 1e-4 < difference < 0.1  # bf16 arithmetic: not the fp32 result, but near it
    bf16.fit()
    losses = [float(row.split(",")[2]) for row in
              (tmp_path / "bf16" / "train.csv").read_text().splitlines()[1:]]
    assert sum(losses[-3:]) <= 0.5 * sum(losses[:3])
    with caplog.at_level("WARNING"):
        fp16 = Trainer(yesno_config(prepared, "amp=fp16", "device=cpu"), tmp_path / "fp16")
    assert fp16.amp_dtype is None and not fp16.scaler.is_enabled()
    assert "amp: fp16 needs a CUDA device; training in fp32 on cpu" in caplog.text


def test_intermediate_ctc_adds_the_weighted_lower_layer_loss(prepared, tmp_path):
    trainer = Trainer(yesno_config(prepared, "model.layers=3", "inter_ctc_layers=[1,2]",
                                   "inter_ctc_weight=0.4"), tmp_path)
    batch = collate([trainer.train_set[i] for i in range(4)])
    result = trainer.train_step(batch)
    gradients = [p.grad.clone() for p in trainer.model.parameters()]
    trainer.model.zero_grad()
    final, lengths, (first, second) = trainer.model(batch.inputs, batch.input_lengths,
                                                    intermediate_layers=(1, 2))
    losses = [ctc_batch_loss(lp, lengths, batch)[0] / 4 for lp in (final, first, second)]
    (0.6 * losses[0] + 0.4 * (losses[1] + losses[2]) / 2).backward()
    # the logged loss is the final layer's alone
    assert result.loss == pytest.approx(float(losses[0].detach()), rel=1e-5)
    for got, expected in zip(gradients, (p.grad for p in trainer.model.parameters()), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_intermediate_ctc_teaches_the_lower_layer_to_transcribe(prepared, tmp_path):
    options = ("max_steps=30", "epochs=100", "data.dev=", "optim.schedule=constant")
    inter_losses = {}
    for name, extra in (("plain", ()), ("inter", ("inter_ctc_layers=[1]",
                                                   "inter_ctc_weight=0.5"))):
        config = yesno_config(prepared, *options, *extra)
        config.data.dev = ""
        trainer = Trainer(config, tmp_path / name)
        trainer.fit()
        batch = collate([trainer.train_set[i] for i in range(8)])
        trainer.model.eval()
        with torch.no_grad():
            _, lengths, (first,) = trainer.model(batch.inputs, batch.input_lengths,
                                                 intermediate_layers=(1,))
            inter_losses[name] = float(ctc_batch_loss(first, lengths, batch)[0]) / 8
    # Untrained for it, layer 1 through the output layer is far from a transcription.
    assert inter_losses["inter"] < 0.3 * inter_losses["plain"], inter_losses


def test_intermediate_ctc_layers_must_lie_below_the_last(prepared, tmp_path):
    with pytest.raises(ValueError, match="inter_ctc_layers.*1 to 1"):
        Trainer(yesno_config(prepared, "inter_ctc_layers=[2]"), tmp_path)


def test_resume_continues_exactly(prepared, tmp_path):
    options = ("max_steps=14", "epochs=50", "augment.specaugment=true", "model.dropout=0.2",
               "checkpoint_every=3")
    Trainer(yesno_config(prepared, *options), tmp_path / "full").fit()
    interrupted = yesno_config(prepared, *options)
    interrupted.max_steps = 8  # stops mid-epoch (5 batches per epoch)
    Trainer(interrupted, tmp_path / "split").fit()
    Trainer(yesno_config(prepared, *options), tmp_path / "split", resume=True).fit()
    full = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "split" / "last" / "model.safetensors"))
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_audio_cache_trains_exactly_as_decoding_every_epoch(prepared, tmp_path):
    options = ("max_steps=12", "epochs=50", "augment.speed_perturb=[0.9,1.0,1.1]",
               "data.num_workers=1")
    plain = Trainer(yesno_config(prepared, *options), tmp_path / "plain")
    cached = Trainer(yesno_config(prepared, *options, "data.cache_audio=true"), tmp_path / "cached")
    assert plain.setup.audio_cache is None
    assert len(cached.setup.audio_cache) == len(plain.train_entries) + len(plain.dev_entries)
    plain.fit()
    cached.fit()
    assert plain.history == cached.history
    weights = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    for key, value in load_file(str(tmp_path / "cached" / "last" / "model.safetensors")).items():
        assert torch.equal(weights[key], value), key


def test_specaugment_starts_at_the_configured_epoch(prepared, tmp_path):
    config = yesno_config(prepared, "augment.specaugment=true",
                          "augment.specaugment_from_epoch=3", "epochs=4")
    trainer = Trainer(config, tmp_path)
    masked_per_epoch = []
    for epoch in range(4):
        trainer.epoch, trainer.batches_done = epoch, 0
        trainer.batches = lambda *args: []  # the switch only, no steps
        trainer.train_epoch()
        features = trainer.train_set[0].signal  # (T, F) log-mel; masks write zeros
        masked_per_epoch.append(bool((features == 0).all(dim=1).any()
                                     or (features == 0).all(dim=0).any()))
    assert masked_per_epoch == [False, False, True, True]


def test_mel_frequency_masks_reach_the_training_features(prepared, tmp_path):
    mfcc = ("features.kind=mfcc", "features.n_mfcc=13", "features.deltas=2",
            "augment.specaugment=true", "augment.specaugment_fill=mean", "augment.time_masks=0",
            "augment.freq_masks=2", "augment.freq_width=10", "epochs=1")
    trainer = Trainer(yesno_config(prepared, *mfcc, "augment.freq_mask_domain=mel"), tmp_path)
    trainer.batches = lambda *args: []  # the switch only, no steps
    trainer.train_epoch()
    masked = trainer.train_set[0].signal
    trainer.train_set.feature_transform = None
    plain = trainer.train_set[0].signal
    # Bands held at their mean move every cepstrum (no dimension is left as it was or set to
    # one value, as a cepstral mask would), and keep the static block's utterance mean.
    changed = (masked != plain).any(dim=0)
    assert int(changed[:13].sum()) >= 12
    assert not (masked.std(dim=0) < 1e-6).any()
    torch.testing.assert_close(masked[:, :13].mean(0), plain[:, :13].mean(0), atol=1e-3,
                               rtol=1e-4)
    with pytest.raises(ValueError, match="freq_mask_domain"):
        Trainer(yesno_config(prepared, *mfcc, "augment.freq_mask_domain=bark"), tmp_path / "b")


def test_batched_feature_masks_stay_within_each_utterance(prepared, tmp_path):
    """The GPU path computes features for a padded batch of waveforms, then masks: each
    utterance on its own frames, so padding stays zero and a mean fill is the real mean."""
    trainer = Trainer(yesno_config(prepared, "epochs=1"), tmp_path)
    trainer.gpu_feature_transform = SpecAugment(freq_masks=0, time_masks=4, time_width=400,
                                                max_time_ratio=1.0, seed=2, fill="mean")
    waves = [audio.load(e.audio) for e in trainer.train_entries[:2]]
    short = min(w.numel() for w in waves) // 2
    waves = [waves[0], waves[1][:short]]
    lengths = torch.tensor([w.numel() for w in waves])
    batch = Batch(pad_sequence(waves, batch_first=True), lengths, torch.zeros(2, 1), lengths,
                  ["a", "b"], ["", ""], ["", ""])
    features, frames = trainer.inputs(batch, train=True)
    plain, _ = trainer.features(batch.inputs, lengths)
    count = int(frames[1])
    assert count < features.shape[1] and torch.equal(features[1, count:],
                                                     torch.zeros_like(features[1, count:]))
    masked = (features[1, :count] != plain[1, :count]).any(dim=1)
    assert masked.any()
    torch.testing.assert_close(features[1, :count][masked][0], plain[1, :count].mean(0))


def test_vtlp_warps_the_training_features(prepared, tmp_path):
    config = yesno_config(prepared, "augment.vtlp=[0.85,0.9]", "epochs=1")
    trainer = Trainer(config, tmp_path)
    trainer.batches = lambda *args: []  # the switch only, no steps
    trainer.train_epoch()
    warped = trainer.train_set[0].signal
    trainer.train_set.feature_transform = None
    original = trainer.train_set[0].signal
    # alpha < 1 compresses frequencies: each bin takes a higher bin's value, so the mean
    # log energy falls where the spectrum falls with frequency (speech above ~1 kHz).
    assert warped.shape == original.shape and not torch.allclose(warped, original)
    assert float(warped[:, -10:].mean()) < float(original[:, -10:].mean())


def _ddp_worker(rank, world, port, config, outdir, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(config, outdir)
    queue.put(("losses", rank, _twenty_steps(trainer, trainer.sampler)))
    if rank == 0:
        # numpy, not tensors: tensors would travel as shared-memory handles that die with us
        queue.put(("state", rank, {k: v.detach().numpy().copy()
                                   for k, v in trainer.model.state_dict().items()}))
    torch.distributed.destroy_process_group()


def _twenty_steps(trainer, sampler) -> list[float]:
    losses = []
    for epoch in range(100):
        sampler.set_epoch(epoch)
        trainer.train_set.epoch = epoch
        for batch in trainer.batches(trainer.train_set, sampler):
            losses.append(trainer.train_step(batch).loss)
            trainer.optimizer_step()
            if len(losses) == 20:
                return losses
    return losses


class _MergedPairs:
    """The global batches of a 2-rank run: rank 0's and rank 1's batch of each step."""

    def __init__(self, sampler):
        self.ranks = [type(sampler)(sampler.lengths.tolist(), sampler.max_frames, seed=sampler.seed,
                                    num_replicas=2, rank=r) for r in range(2)]

    def set_epoch(self, epoch, skip=0):
        for sampler in self.ranks:
            sampler.set_epoch(epoch, skip)

    def __iter__(self):
        for first, second in zip(*self.ranks, strict=True):
            yield first + second

    def __len__(self):
        return len(self.ranks[0])


def test_two_process_gloo_ddp_matches_one_process(prepared, tmp_path):
    # SGD: Adam's normalised steps would magnify float rounding differences between the
    # all-reduced and the single-process gradients into visibly different weights.
    options = ("data.max_frames=1500", "epochs=100", "optim.name=sgd", "optim.lr=1e-4",
               "optim.schedule=constant", "optim.warmup_steps=0")
    config = yesno_config(prepared, *options)
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = 29500 + os.getpid() % 1000
    workers = [context.Process(target=_ddp_worker, args=(r, 2, port, config, tmp_path / "ddp",
                                                         queue)) for r in range(2)]
    for worker in workers:
        worker.start()
    received = {}
    for _ in range(3):
        kind, rank, payload = queue.get(timeout=300)
        received[(kind, rank)] = payload
    for worker in workers:
        worker.join(timeout=60)
    ddp_losses, ddp_state = received[("losses", 0)], received[("state", 0)]
    assert ddp_losses == received[("losses", 1)]  # every rank reports the global loss
    single = Trainer(yesno_config(prepared, *options), tmp_path / "single")
    losses = _twenty_steps(single, _MergedPairs(single.sampler))
    assert len(ddp_losses) == 20
    for ours, theirs in zip(losses, ddp_losses, strict=True):
        assert abs(ours - theirs) <= 1e-4 * max(1.0, abs(ours))
    for key, value in single.model.state_dict().items():
        assert torch.allclose(value, torch.from_numpy(ddp_state[key]), atol=1e-4), key


def test_schedules_and_newbob():
    assert multiplier("warmup_cosine", 0, 100, 10, 0.1) == pytest.approx(0.1)
    assert multiplier("warmup_cosine", 10, 100, 10, 0.1) == pytest.approx(1.0)
    assert multiplier("warmup_cosine", 100, 100, 10, 0.1) == pytest.approx(0.1)
    assert multiplier("warmup_exponential", 100, 100, 0, 0.01) == pytest.approx(0.01)
    assert multiplier("onecycle", 30, 100, 0, 0) == pytest.approx(1.0)
    newbob = Newbob(threshold=0.01)
    for wer in (0.5, 0.4, 0.395, 0.39):
        newbob.update(wer)
    assert newbob.scale == 0.25
    with pytest.raises(ValueError, match="unknown schedule"):
        multiplier("linear", 0, 1, 0, 0)


def test_best_checkpoint_breaks_wer_ties_by_cer_then_the_later_epoch(prepared, tmp_path):
    trainer = Trainer(yesno_config(prepared, "keep_best=2"), tmp_path)
    dev_results = [(0.10, 0.05, 9.0), (0.05, 0.03, 5.0), (0.05, 0.02, 8.0),
                   (0.05, 0.02, 9.5), (0.20, 0.10, 1.0)]  # (wer, cer, loss) per epoch
    for epoch, (wer, cer, loss) in enumerate(dev_results, start=1):
        trainer.epoch = epoch
        metrics = {"wer": wer, "cer": cer, "loss": loss, "epoch": epoch}
        trainer.history.append(metrics)
        trainer.save_epoch(metrics)
    best = json.loads((tmp_path / "best" / "config.json").read_text())["metrics"]
    assert best["epoch"] == 4  # not epoch 2 (lowest loss) nor 3 (same WER and CER, earlier)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["epoch-3", "epoch-4"]


def test_checkpoint_refuses_pickles_and_unknown_versions(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="pickle files .* are never loaded"):
        load_checkpoint(evil)
    assert not marker.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    (folder / "config.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({"format_version": 1,
                                                    "model": {"vocab_size": 2},
                                                    "features": {}}))
    (folder / "tokenizer.json").write_text('{"type": "char", "symbols": ["<blank>", " "], '
                                           '"case": "lower"}')
    (folder / "cmvn.json").write_text(json.dumps({"mean": [0] * 80, "std": [1] * 80}))
    with pytest.raises(CheckpointError, match="model.safetensors: cannot load the weights"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_checkpoint_files_follow_the_umask(prepared, tmp_path):
    """Weights as readable as the JSON beside them: a model folder shared with a group."""
    previous = os.umask(0o027)
    try:
        Trainer(yesno_config(prepared, "max_steps=1", "epochs=1"), tmp_path / "exp").fit()
        average_checkpoints([tmp_path / "exp" / "last"], tmp_path / "avg")
    finally:
        os.umask(previous)
    files = [*(tmp_path / "exp" / "last").iterdir(), *(tmp_path / "avg").iterdir()]
    assert {f.name for f in files} >= {"model.safetensors", "trainer.safetensors"}
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o640, file


def test_average_checkpoints(prepared, tmp_path):
    trainer = Trainer(yesno_config(prepared, "max_steps=2", "epochs=5"), tmp_path / "a")
    trainer.fit()
    second = Trainer(yesno_config(prepared, "max_steps=4", "epochs=5", "seed=1"), tmp_path / "b")
    second.fit()
    average_checkpoints([tmp_path / "a" / "last", tmp_path / "b" / "last"], tmp_path / "avg")
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    averaged = load_file(str(tmp_path / "avg" / "model.safetensors"))
    for key in a:
        assert torch.allclose(averaged[key], (a[key] + b[key]) / 2, atol=1e-6)
    assert load_checkpoint(tmp_path / "avg").model.num_parameters() > 0
