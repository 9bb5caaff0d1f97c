"""CTC training loop: the step (forward, CTC loss, backward under AMP, DDP-ready), the
optimiser step, epochs, validation and early stopping, composed with the set-up
(:mod:`.setup`), the checkpoint manager (:mod:`.checkpoints`) and the logs (:mod:`.metrics`).

Output folder layout::

    last/               resumable checkpoint (model + trainer state), rewritten atomically
    checkpoints/epoch-N  model checkpoints of the best ``keep_best`` epochs by dev WER
    best/               copy of the best epoch's checkpoint (what inference uses)
    train.csv valid.csv  logs (and TensorBoard events in tb/ when tensorboard is installed)
    config.yaml         the resolved configuration
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from speechrnn.augment import FeatureChain
from speechrnn.data.dataset import Batch
from speechrnn.data.sampler import BucketingSampler
from speechrnn.decoding.greedy import greedy_ids
from speechrnn.fileio import write_atomic
from speechrnn.models import checkpoint as ckpt
from speechrnn.scoring import error_rates
from speechrnn.training.checkpoints import CheckpointManager
from speechrnn.training.config import TrainConfig, to_dict
from speechrnn.training.metrics import MetricsLogger
from speechrnn.training.schedules import Newbob, build_scheduler
from speechrnn.training.setup import prepare_training

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    loss: float  # mean CTC loss per utterance over the (global) batch
    utterances: int
    skipped: int  # utterances dropped: empty/too-long target, non-finite loss


def ctc_batch_loss(log_probs: torch.Tensor, output_lengths: torch.Tensor, batch: Batch
                   ) -> tuple[torch.Tensor, int, int]:
    """Summed CTC loss over the batch's usable utterances: (loss sum, used, skipped).

    An utterance is skipped when its target is empty or needs more frames than the model
    produced (one per label plus a blank between repeated labels), or its loss is not finite.
    """
    targets, target_lengths = batch.targets.cpu(), batch.target_lengths
    repeats = torch.zeros_like(target_lengths)
    if targets.shape[1] > 1:
        same = (targets[:, 1:] == targets[:, :-1]) & (targets[:, 1:] != 0)
        repeats = same.sum(1)
    needed = target_lengths + repeats
    usable = (target_lengths > 0) & (needed <= output_lengths)
    skipped = int((~usable).sum())
    if not usable.any():
        return log_probs.sum() * 0.0, 0, skipped
    index = usable.nonzero().squeeze(1)
    flat_targets = torch.cat([targets[i, : target_lengths[i]] for i in index.tolist()])
    losses = torch.nn.functional.ctc_loss(
        log_probs[index.to(log_probs.device)].transpose(0, 1).float(),
        flat_targets.to(log_probs.device),
        output_lengths[index],
        target_lengths[index],
        blank=0, reduction="none", zero_infinity=True,
    )
    finite = torch.isfinite(losses) & (losses > 0)  # zero_infinity turns inf into 0
    skipped += int((~finite).sum())
    return losses[finite].sum(), int(finite.sum()), skipped


def cpu_has_bf16() -> bool | None:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX), read from the kernel's
    CPU flags (PyTorch has no public test for it); None where /proc/cpuinfo is missing."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags



class Trainer:
    """Trains into ``outdir`` from ``config`` (which it does not change: the resolved copy is
    ``trainer.config``). The parts are public for tests and benchmarks: :meth:`batches`,
    :meth:`inputs`, :meth:`autocast`, :meth:`train_step`, :meth:`optimizer_step`,
    :meth:`train_epoch`, :meth:`end_epoch`, :meth:`validate`, :meth:`fit`."""

    def __init__(self, config: TrainConfig, outdir: str | Path, resume: bool = False):
        self.outdir = Path(outdir)
        self.setup = setup = prepare_training(config, self.outdir, resume)
        self.config = config = setup.config
        self.rank, self.world_size, self.device = setup.rank, setup.world_size, setup.device
        self.tokenizer, self.features, self.model = setup.tokenizer, setup.features, setup.model
        self.train_set, self.sampler = setup.train_set, setup.sampler
        self.train_entries, self.dev_entries = setup.train_entries, setup.dev_entries
        self.inter_ctc_layers = tuple(config.inter_ctc_layers)
        self.ddp_model = self.model
        if self.world_size > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = self._optimizer()
        self.gpu_feature_transform: FeatureChain | None = None
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.optim.accum_steps)
        # The schedule spans the configured epochs; max_steps/max_minutes only stop early,
        # so a run stopped and resumed follows the same learning-rate curve.
        total = self.steps_per_epoch * config.epochs
        self.newbob = Newbob(config.optim.newbob_threshold) \
            if config.optim.schedule == "newbob" else None
        self.scheduler = build_scheduler(self.optimizer, config.optim.schedule, total,
                                         config.optim.warmup_steps, config.optim.final_lr_ratio,
                                         self.newbob)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.checkpoints = CheckpointManager(self.outdir, config.keep_best)
        self.metrics = MetricsLogger(self.outdir)
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # batches of the current epoch already consumed
        self.history: list[dict] = []  # per epoch: dev WER etc.
        self.skipped_total = 0
        self.started = time.time()
        self.epoch_started = time.time()
        self.epoch_losses: list[float] = []  # per step of the epoch: mean loss per utterance
        self.best_epoch: int | None = None  # the epoch best/ holds
        if resume:
            self._load_state()

    def describe(self) -> str:
        """The resolved configuration's main lines, printed when training starts."""
        config, model = self.config, self.config.model
        features = config.features
        return "\n".join([
            f"model: {model.layers} x {model.hidden} "
            f"{'bidirectional ' if model.bidirectional else ''}{model.cell}, subsampling "
            f"{model.subsampling}, {self.model.num_parameters():,} parameters, "
            f"{len(self.tokenizer)} output symbols ({config.tokenizer.kind})",
            f"features: {features.kind} at {features.sample_rate} Hz, {self.features.dim} per "
            f"frame, CMVN {config.cmvn}",
            f"data: {len(self.train_entries)} training utterances "
            f"({sum(e.duration for e in self.train_entries) / 3600:.2f} h), "
            f"{len(self.dev_entries)} dev; batches of up to {config.data.max_frames} frames, "
            f"{self.steps_per_epoch} steps per epoch",
            f"training: {config.epochs} epochs, {config.optim.name} lr {config.optim.lr:g} "
            f"({config.optim.schedule}, warm-up {config.optim.warmup_steps}), device "
            f"{self.device}, amp {config.amp}"])

    def _optimizer(self) -> torch.optim.Optimizer:
        options = self.config.optim
        if options.name == "adamw":
            return torch.optim.AdamW(self.model.parameters(), lr=options.lr,
                                     weight_decay=options.weight_decay)
        if options.name == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=options.lr,
                                   momentum=options.momentum, weight_decay=options.weight_decay)
        raise ValueError(f"unknown optimiser {options.name!r} (adamw | sgd)")

    def batches(self, dataset=None, sampler=None):
        """A loader over ``dataset`` in ``sampler``'s batches (default: this epoch's
        training batches, from where the epoch stands)."""
        return self.setup.loader(dataset or self.train_set, sampler or self.sampler,
                                 self.epoch)

    # -- the step --------------------------------------------------------------------------

    def inputs(self, batch: Batch, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Features on the model's device: computed here when the batch holds waveforms."""
        inputs = batch.inputs.to(self.device, non_blocking=True)
        if inputs.dim() == 3:
            return inputs, batch.input_lengths
        with torch.no_grad():
            features, lengths = self.features(inputs, batch.input_lengths)
            if train and self.gpu_feature_transform is not None:
                # Each utterance's own frames only, as on the CPU path: masks never land in
                # the padding, and a mean fill is not pulled towards its zeros.
                for row, count in zip(features, lengths.tolist(), strict=True):
                    row[:count] = self.gpu_feature_transform(row[:count])
        return features, lengths

    def _amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``amp``, or None for fp32. bf16 runs on the CPU too: where
        the CPU has bf16 instructions (AVX512-BF16, AMX), a BLSTM training step is 1.4-1.6×
        faster (tools/bench/amp_step.py). fp16 needs CUDA (its loss scaler does)."""
        if self.config.amp == "none":
            return None
        if self.device.type != "cuda":
            if self.config.amp == "fp16":
                log.warning("amp: fp16 needs a CUDA device; training in fp32 on %s "
                            "(amp: bf16 runs on CPUs)", self.device)
                return None
            if cpu_has_bf16() is False:
                log.warning("this CPU has no bf16 instructions (AVX512-BF16 or AMX): "
                            "amp: bf16 emulates them and trains slower than amp: none")
        return torch.bfloat16 if self.config.amp == "bf16" else torch.float16

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, batch: Batch, sync: bool = True) -> StepResult:
        """Forward/backward one batch. The loss is normalised by the utterance count of the
        *global* batch, so N ranks each holding part of a batch produce exactly the gradient
        one process would get from the whole batch."""
        self.ddp_model.train()
        features, lengths = self.inputs(batch, train=True)
        context = nullcontext() if sync or self.world_size == 1 else self.ddp_model.no_sync()
        with context:
            with self.autocast():
                log_probs, output_lengths, *extra = self.ddp_model(
                    features, lengths, intermediate_layers=self.inter_ctc_layers)
            intermediate = extra[0] if extra else []
            loss_sum, used, skipped = ctc_batch_loss(log_probs, output_lengths, batch)
            counts = torch.tensor([float(used), float(skipped), float(loss_sum.detach())],
                                  dtype=torch.float64, device=self.device)
            if self.world_size > 1:
                dist.all_reduce(counts)
            global_count = max(float(counts[0]), 1.0)
            scale = self.world_size / global_count / self.config.optim.accum_steps
            objective = loss_sum
            if intermediate:  # the logged loss stays the final layer's, comparable across runs
                weight = self.config.inter_ctc_weight
                inter_sum = sum(ctc_batch_loss(inter, output_lengths, batch)[0]
                                for inter in intermediate)
                objective = (1 - weight) * loss_sum + weight * inter_sum / len(intermediate)
            self.scaler.scale(objective * scale).backward()
        return StepResult(float(counts[2]) / global_count, int(counts[0]), int(counts[1]))

    def optimizer_step(self) -> None:
        """Clip and apply the accumulated gradient. A non-finite one never reaches the weights;
        the learning-rate schedule then waits too, so it counts real updates."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        updated = bool(torch.isfinite(norm))
        if updated:
            self.scaler.step(self.optimizer)
        elif self.scaler.is_enabled():  # expected while fp16's loss scale finds its level
            log.info("step %d: fp16 gradient overflow at loss scale %g, update skipped",
                     self.step, self.scaler.get_scale())
        else:
            log.warning("step %d: non-finite gradient norm, update skipped", self.step)
            self.skipped_total += 1
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if updated:
            self.scheduler.step()
        self.step += 1

    # -- loop ------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train until ``epochs``/``max_steps``/early stopping; returns the final summary."""
        config = self.config
        if self.rank == 0:
            self.outdir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.outdir / "config.yaml", yaml.safe_dump(to_dict(config)))
        anomaly = torch.autograd.set_detect_anomaly(config.detect_anomaly)
        with anomaly:
            while self.epoch < config.epochs and not self._done():
                self.train_epoch()
                if self._done() and self.batches_done:
                    break
                self.end_epoch()
                if self._early_stop():
                    log.info("early stopping after epoch %d", self.epoch)
                    break
        if self.rank == 0:
            self._save_last()
        return {"step": self.step, "epoch": self.epoch, "history": self.history,
                "skipped": self.skipped_total, "best_epoch": self.best_epoch}

    def _done(self) -> bool:
        config = self.config
        if config.max_minutes is not None and time.time() - self.started > 60 * config.max_minutes:
            return True
        return config.max_steps is not None and self.step >= config.max_steps

    def train_epoch(self) -> None:
        config = self.config
        self.sampler.set_epoch(self.epoch, skip=self.batches_done)
        self.train_set.epoch = self.epoch
        masking = self.epoch + 1 >= config.augment.specaugment_from_epoch
        steps = [t for t in (self.setup.vtlp, self.setup.specaugment if masking else None)
                 if t is not None]
        transform = FeatureChain(steps) if steps else None
        on_gpu = self.device.type == "cuda"
        self.train_set.feature_transform = None if on_gpu else transform
        self.gpu_feature_transform = transform if on_gpu else None
        loader = self.batches()
        progress = None
        if config.progress and self.rank == 0:
            from tqdm import tqdm

            progress = tqdm(total=len(self.sampler) + self.batches_done, initial=self.batches_done,
                            desc=f"epoch {self.epoch + 1}", unit="batch", leave=False)
        started, seconds_audio = time.time(), 0.0
        for batch in loader:
            accumulate = config.optim.accum_steps
            last_of_group = (self.batches_done + 1) % accumulate == 0
            result = self.train_step(batch, sync=last_of_group)
            self.epoch_losses.append(result.loss)
            self.skipped_total += result.skipped + batch.skipped
            self.batches_done += 1
            seconds_audio += float(batch.input_lengths.sum()) * (
                self.features.frame_shift if batch.inputs.dim() == 3
                else 1 / config.features.sample_rate)
            if last_of_group:
                self.optimizer_step()
                if self.rank == 0:
                    self._log_step(result, seconds_audio / max(time.time() - started, 1e-9))
                if self.rank == 0 and self.step % config.checkpoint_every == 0:
                    self._save_last()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{result.loss:.3f}",
                                     rtf=f"{seconds_audio / max(time.time() - started, 1e-9):.0f}x")
            if self._done():
                break
        if progress is not None:
            progress.close()

    def end_epoch(self) -> None:
        """Validate, log and checkpoint the epoch just trained, and print its line."""
        self.epoch += 1
        self.batches_done = 0
        metrics = self.validate() if self.dev_entries else {}
        metrics["epoch"] = self.epoch
        metrics["step"] = self.step
        self.history.append(metrics)
        if self.newbob is not None and "wer" in metrics:
            self.newbob.update(metrics["wer"])
        if self.rank == 0:
            self.metrics.log("valid.csv", metrics)
            best = self.best_epoch = self.save_epoch(metrics)
            self._save_last()
            print(self._epoch_line(metrics, best == self.epoch), flush=True)
        self.epoch_losses = []
        self.epoch_started = time.time()

    def _epoch_line(self, metrics: dict, best: bool) -> str:
        """One line per epoch, kept on the console and in a recipe's log (not a progress
        bar): train and dev loss, dev WER/CER, learning rate, time, and the checkpoint."""
        losses = self.epoch_losses
        parts = [f"epoch {self.epoch}/{self.config.epochs}",
                 f"train loss {sum(losses) / len(losses):.3f}" if losses else "train loss -"]
        if "wer" in metrics:
            if self.tokenizer.kind == "phone":  # greedy output is phones, not words
                rates = [f"dev PER {100 * metrics['wer']:.2f}%"]
            else:
                rates = [f"dev WER {100 * metrics['wer']:.2f}%", f"CER {100 * metrics['cer']:.2f}%"]
            parts += [f"dev loss {metrics['loss']:.3f}", *rates]
        parts += [f"lr {self.scheduler.get_last_lr()[0]:.2e}",
                  f"{time.time() - self.epoch_started:.1f} s",
                  "new best, saved to best/" if best and "wer" in metrics else "saved to last/"]
        return " | ".join(parts)

    def validate(self) -> dict:
        """Greedy WER/CER and mean CTC loss on the dev set (every rank computes the same)."""
        dataset = self.setup.dataset(self.dev_entries, train=False)
        frames = [self.setup.frames(e.duration) for e in self.dev_entries]
        sampler = BucketingSampler(frames, self.config.data.max_frames, shuffle=False)
        references, hypotheses = [], []
        total_loss, count = 0.0, 0
        self.model.eval()
        with torch.no_grad():
            for batch in self.batches(dataset, sampler):
                features, lengths = self.inputs(batch, train=False)
                with self.autocast():
                    log_probs, output_lengths = self.model(features, lengths)
                loss_sum, used, _ = ctc_batch_loss(log_probs, output_lengths, batch)
                total_loss += float(loss_sum)
                count += used
                for ids, text in zip(greedy_ids(log_probs, output_lengths), batch.texts,
                                     strict=True):
                    hypotheses.append(self.tokenizer.decode(ids))
                    references.append(self.tokenizer.reference(text))
        wer, cer = error_rates(references, hypotheses, self.tokenizer.case)
        return {"wer": wer, "cer": cer, "loss": total_loss / max(count, 1)}

    def _early_stop(self) -> bool:
        patience = self.config.early_stop
        wers = [h["wer"] for h in self.history if "wer" in h]
        if not patience or len(wers) <= patience:
            return False
        return min(wers[-patience:]) >= min(wers[:-patience])

    # -- persistence -----------------------------------------------------------------------

    def _write_model(self, metrics: dict):
        """A writer of this model's checkpoint files into a folder, with ``metrics``."""
        def write(directory: Path) -> None:
            ckpt.save_model(directory, self.model, self.config.features, self.tokenizer,
                            self.model.cmvn, metrics, {"train_config": to_dict(self.config)})

        return write

    def _trainer_state(self) -> dict:
        state = {
            "step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
            "history": self.history, "skipped_total": self.skipped_total,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": torch.get_rng_state(),
        }
        if self.newbob is not None:
            state["newbob"] = self.newbob.state_dict()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _save_last(self) -> None:
        self.checkpoints.save_last(self._write_model(self.history[-1] if self.history else {}),
                                   self._trainer_state())

    def _load_state(self) -> None:
        last, loaded, state = self.checkpoints.load_last()
        self.model.load_state_dict(loaded.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.newbob is not None and "newbob" in state:
            self.newbob.load_state_dict(state["newbob"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.epoch = state["step"], state["epoch"]
        self.batches_done = state["batches_done"]
        self.history, self.skipped_total = state["history"], state["skipped_total"]
        log.info("resumed from %s at step %d (epoch %d, batch %d)", last, self.step,
                 self.epoch, self.batches_done)

    def save_epoch(self, metrics: dict) -> int:
        """Keep this epoch's model if its dev WER is among the best; refresh best/. Returns
        the best epoch so far."""
        return self.checkpoints.save_epoch(self.epoch, self.history, self._write_model(metrics))

    def _log_step(self, result: StepResult, speed: float) -> None:
        if self.step % self.config.log_every and self.step != 1:
            return
        row = {"step": self.step, "epoch": self.epoch + 1, "loss": round(result.loss, 5),
               "lr": self.scheduler.get_last_lr()[0], "audio_per_second": round(speed, 1),
               "skipped": self.skipped_total}
        self.metrics.log("train.csv", row)
