"""Training loop for the H-(V)AE: Adam, the reference's schedules, checkpoints, exact resume.

Run folder layout::

  ``checkpoint.safetensors`` / ``checkpoint.json``  last checkpoint (model, Adam state, torch RNG,
                                                   position in the epoch), every N steps
  ``best.safetensors`` / ``best.json``              model with the lowest validation loss
  ``metrics.jsonl``                                one JSON object per logged step / validation
  ``loss_curve.png``                               train and validation loss against samples seen

Batches of an epoch come from a permutation seeded by (seed, epoch), and the torch RNG (VAE
sampling) is saved with each checkpoint, so `resume` continues a killed run exactly where the
last checkpoint left it.

Schedules (SPEC §4.5): the AE uses a constant learning rate and no KL term. The VAE's KL weight
is 0 for `kl_off_epochs` epochs, then rises linearly to `lambda_kl` over `kl_warmup_epochs`
(np.linspace(0, λ, warmup) per epoch, as the reference), and its learning rate decreases
log-linearly from `lr` to `lr_final` over the KL-free epochs, then stays there (the reference's
2.5e-3, 1.16e-3, 5.39e-4, 2.5e-4, 2.5e-4, …).

Beyond the reference, ``lr_schedule="cosine"`` anneals the learning rate per step, for either
model, from `lr` to `lr_final` over the whole run (epochs × steps per epoch):
lr(t) = lr_final + ½ (lr − lr_final) (1 + cos(π t / T)). With either schedule, `warmup_steps` > 0
ramps the rate linearly from lr/warmup_steps over the first steps (useful when a fresh Adam starts
from trained weights, whose first updates are ±lr on every parameter).

Time budget: with ``max_seconds`` the run also stops once the training loop (steps, validations,
checkpoints; counted across resumes) has run that long, after a last validation and checkpoint,
and the cosine schedule runs over the larger of the two fractions, steps / (epochs × steps per
epoch) and seconds / max_seconds, so it ends at lr_final by whichever limit comes first. Such a
run's learning rates depend on the clock: a resume continues from the saved elapsed time, but is
not bitwise the run it continues.

Loss weights per degree (beyond the reference): with ``degree_weights`` (one weight per l) each
coefficient's squared error is weighted by its degree's weight, scaled to mean 1 over the
coefficients (:func:`holoprot.model.coefficient_weights`); training and validation losses use
them (the best checkpoint is chosen by the weighted objective), ``recon_mse`` stays the plain MSE.

Weight average (beyond the reference): with ``ema_decay`` the trainer keeps an exponential moving
average of the weights (:class:`holoprot.training.averaging.WeightAverage`), updated after every
step; validation, the best checkpoint and the saved models are the averaged weights, and the
checkpoint holds both (a resume that turns the average on starts it from the resumed weights).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from holoprot._util.atomic import atomic_path, new_file_mode
from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.model import HVAE, coefficient_weights, hvae_loss, save_model
from holoprot.training.averaging import WeightAverage
from holoprot.training.dataset import CoefficientDataset

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (defaults: the reference z=128 H-AE recipe)."""

    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3
    lr_final: float = 2.5e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lambda_rec: float = 1000.0
    lambda_kl: float = 0.5
    kl_off_epochs: int = 4
    kl_warmup_epochs: int = 2
    seed: int = 123456789
    checkpoint_every: int = 100
    validations_per_epoch: int = 5
    max_validation_samples: int = 16384
    max_seconds: float | None = None
    degree_weights: tuple[float, ...] | None = None
    ema_decay: float | None = None

    def kl_weight(self, epoch: int, is_vae: bool) -> float:
        if not is_vae:
            return 0.0
        ramp = np.linspace(0.0, self.lambda_kl, self.kl_warmup_epochs).tolist()
        schedule = [0.0] * self.kl_off_epochs + ramp
        return schedule[epoch] if epoch < len(schedule) else self.lambda_kl

    def learning_rate(
        self, epoch: int, is_vae: bool, step: int = 0, total_steps: int = 1, seconds: float = 0.0
    ) -> float:
        """Learning rate at `epoch` / global `step` of a run of `total_steps` steps, `seconds`
        into its time budget (if any)."""
        if self.lr_schedule == "cosine":
            t = min(step, total_steps) / max(1, total_steps)
            if self.max_seconds:
                t = max(t, min(1.0, seconds / self.max_seconds))
            lr = self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))
        elif not is_vae:
            lr = self.lr
        elif epoch >= self.kl_off_epochs - 1:
            lr = self.lr_final
        else:
            steps = np.logspace(math.log10(self.lr), math.log10(self.lr_final), self.kl_off_epochs)
            lr = float(steps[epoch])
        if step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr


def input_norm_constant(data: CoefficientDataset, rows: np.ndarray, ls: np.ndarray) -> float:
    """mean_i sqrt(Σ_f x_if² / (2 l_f + 1)) over the given rows (SPEC §3.5)."""
    weight = 1.0 / (2 * ls + 1)
    total = 0.0
    for start in range(0, len(rows), 8192):
        x = data.rows(rows[start : start + 8192]).astype(np.float64)
        total += float(np.sqrt((x * x) @ weight).sum())
    return total / len(rows)


class Trainer:
    """Trains `model` on the train rows of `data`, validating on the val rows.

    Args:
        model: an HVAE whose config already holds the input-normalising constant.
        data: cached coefficients.
        train_rows, val_rows: residue indices of the two splits.
        run_dir: where checkpoints, metrics and the best model go.
        settings: optimisation settings.
        metadata: JSON-able description stored with every saved model (data, split, …).
        device: torch device for the model and batches.
    """

    def __init__(
        self,
        model: HVAE,
        data: CoefficientDataset,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        run_dir: Path,
        settings: TrainSettings,
        metadata: dict,
        device: torch.device,
    ) -> None:
        self.model = model.to(device)
        self.data = data
        self.train_rows = train_rows
        rng = np.random.default_rng(settings.seed)
        n_val = min(len(val_rows), settings.max_validation_samples)
        self.val_rows = np.sort(rng.choice(val_rows, n_val, replace=False))
        self.run_dir = run_dir
        self.settings = settings
        self.metadata = metadata
        self.device = device
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.steps_per_epoch = max(1, len(train_rows) // settings.batch_size)
        self.loss_weights = (
            None
            if settings.degree_weights is None
            else coefficient_weights(settings.degree_weights, model.config.irreps_in).to(device)
        )
        self.average = (
            None if settings.ema_decay is None else WeightAverage(self.model, settings.ema_decay)
        )
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.samples_seen = 0
        self.best_val = math.inf
        self.wall_time = 0.0
        self.elapsed = 0.0

    # ---- batches --------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.settings.seed, epoch]).permutation(self.train_rows)
        bs = self.settings.batch_size
        return [order[i * bs : (i + 1) * bs] for i in range(self.steps_per_epoch)]

    def _tensor(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.data.rows(rows)).to(self.device, non_blocking=True)

    # ---- validation -----------------------------------------------------------------------
    @property
    def result_model(self) -> HVAE:
        """The weights this run validates and saves: the weight average if any, else the model."""
        return self.model if self.average is None else self.average.module

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms of :attr:`result_model` over the validation sample (eval mode, z = μ)."""
        model = self.result_model
        model.eval()
        sums = {"loss": 0.0, "recon_mse": 0.0, "kl": 0.0}
        kl_w = self.settings.kl_weight(self.epoch, self.model.config.is_vae)
        for start in range(0, len(self.val_rows), 1024):
            rows = self.val_rows[start : start + 1024]
            out = model(self._tensor(rows), sample=False)
            _, terms = hvae_loss(
                out,
                lambda_rec=self.settings.lambda_rec,
                lambda_kl=kl_w,
                weights=self.loss_weights,
            )
            for k in sums:
                sums[k] += terms[k] * len(rows)
        self.model.train()
        return {k: v / len(self.val_rows) for k, v in sums.items()}

    # ---- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
        }
        opt = self.optimizer.state_dict()
        for idx, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.average is not None:
            for k, v in self.average.state_dict().items():
                tensors[f"average.{k}"] = v.detach().cpu().contiguous()
        weights = self.run_dir / "checkpoint.safetensors"
        # the weights are renamed into place first, then the json: a run killed between the two
        # leaves checksums that disagree, which load_checkpoint refuses
        with (
            atomic_path(self.run_dir / "checkpoint.json") as tmp_json,
            atomic_path(weights) as tmp,
        ):
            save_file(tensors, str(tmp))
            os.chmod(tmp, new_file_mode())  # safetensors writes 0600 whatever the umask
            info = {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "samples_seen": self.samples_seen,
                "best_val": self.best_val,
                "wall_time_s": self.wall_time,
                "elapsed_s": self.elapsed,
                "average_updates": None if self.average is None else self.average.updates,
                "initialised_from": self.metadata.get("initialised_from"),
                "initialised_from_sha256": self.metadata.get("initialised_from_sha256"),
                "param_groups": opt["param_groups"],
                "settings": asdict(self.settings),
                "config": self.model.config.to_dict(),
                "sha256": sha256_file(tmp),
            }
            tmp_json.write_text(json.dumps(seal(info), indent=1) + "\n")

    def load_checkpoint(self) -> None:
        """Restore model, optimizer, RNG and position from the run folder's checkpoint."""
        weights = self.run_dir / "checkpoint.safetensors"
        try:
            info = json.loads((self.run_dir / "checkpoint.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HoloprotError(f"{self.run_dir}: no readable checkpoint to resume from") from exc
        check_seal(info, self.run_dir / "checkpoint.json")
        if sha256_file(weights) != info["sha256"]:
            raise HoloprotError(f"{weights}: checksum does not match checkpoint.json")
        if info["config"] != self.model.config.to_dict():
            raise HoloprotError(f"{self.run_dir}: checkpoint was made with another model config")
        tensors = load_file(str(weights))
        self.model.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
        )
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        if self.average is not None:
            averaged = {k[8:]: v for k, v in tensors.items() if k.startswith("average.")}
            if averaged:
                self.average.load_state_dict(averaged, info["average_updates"])
            else:
                self.average = WeightAverage(self.model, self.average.decay)
        for key in ("epoch", "step_in_epoch", "global_step", "samples_seen", "best_val"):
            setattr(self, key, info[key])
        self.wall_time = info["wall_time_s"]
        self.elapsed = info.get("elapsed_s", self.wall_time)
        _truncate_log(self.run_dir / "metrics.jsonl", self.global_step)

    # ---- the loop -------------------------------------------------------------------------
    def fit(self, on_step: Callable[[dict], None] | None = None) -> dict[str, float]:
        """Train until `settings.epochs` (or `settings.max_seconds`); returns the best validation
        metrics."""
        s = self.settings
        is_vae = self.model.config.is_vae
        val_every = max(1, self.steps_per_epoch // max(1, s.validations_per_epoch))
        total_steps = s.epochs * self.steps_per_epoch
        started, elapsed_before = _clock(), self.elapsed
        out_of_time = bool(s.max_seconds) and self.elapsed >= s.max_seconds
        self.model.train()
        log = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in finally
        pool = ThreadPoolExecutor(1)
        try:
            while self.epoch < s.epochs and not out_of_time:
                batches = self._epoch_batches(self.epoch)
                kl_w = s.kl_weight(self.epoch, is_vae)
                pending = None
                if self.step_in_epoch < len(batches):
                    pending = pool.submit(self._tensor, batches[self.step_in_epoch])
                while self.step_in_epoch < len(batches):
                    t0 = _clock()
                    x = pending.result()
                    nxt = self.step_in_epoch + 1
                    pending = (
                        pool.submit(self._tensor, batches[nxt]) if nxt < len(batches) else None
                    )
                    lr = s.learning_rate(
                        self.epoch, is_vae, self.global_step, total_steps, self.elapsed
                    )
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    out = self.model(x)
                    loss, terms = hvae_loss(
                        out, lambda_rec=s.lambda_rec, lambda_kl=kl_w, weights=self.loss_weights
                    )
                    if not math.isfinite(terms["loss"]):
                        raise HoloprotError(
                            f"training diverged at step {self.global_step} (loss {terms['loss']});"
                            " lower --lr or check the input data"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    if self.average is not None:
                        self.average.update(self.model)
                    dt = _clock() - t0
                    self.wall_time += dt
                    self.elapsed = elapsed_before + _clock() - started
                    out_of_time = bool(s.max_seconds) and self.elapsed >= s.max_seconds
                    self.step_in_epoch += 1
                    self.global_step += 1
                    self.samples_seen += len(x)
                    record = {
                        "step": self.global_step,
                        "epoch": self.epoch,
                        "samples": self.samples_seen,
                        "lr": lr,
                        "kl_weight": kl_w,
                        "samples_per_s": len(x) / dt,
                        "elapsed_s": self.elapsed,
                        **{f"train_{k}": v for k, v in terms.items()},
                    }
                    end_of_epoch = self.step_in_epoch == len(batches)
                    validate = end_of_epoch or out_of_time or self.step_in_epoch % val_every == 0
                    if validate:
                        val = self.validate()
                        record.update({f"val_{k}": v for k, v in val.items()})
                        if val["loss"] < self.best_val:
                            self.best_val = val["loss"]
                            record["best"] = True
                            self._save_model("best", val)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if on_step is not None:
                        on_step(record)
                    if end_of_epoch:
                        self.epoch += 1
                        self.step_in_epoch = 0
                    if validate or self.global_step % s.checkpoint_every == 0:
                        self.save_checkpoint()
                    if end_of_epoch or out_of_time:
                        break
        finally:
            pool.shutdown(wait=True)
            log.close()
        return {"best_val_loss": self.best_val}

    def _save_model(self, name: str, val: dict[str, float]) -> None:
        meta = {
            **self.metadata,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "samples_seen": self.samples_seen,
            "wall_time_s": round(self.wall_time, 1),
            "validation": val,
            "settings": asdict(self.settings),
        }
        save_model(self.result_model, self.run_dir / name, meta)


def _clock() -> float:
    """Seconds of a monotonic clock (a function of its own, so tests can replace it)."""
    return time.perf_counter()


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= last_step]
    path.write_text("".join(ln + "\n" for ln in keep))


def plot_loss_curve(metrics_path: Path, png_path: Path) -> None:
    """Train (smoothed) and validation loss against samples seen, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln.strip()]
    if not records:
        return
    samples = np.array([r["samples"] for r in records])
    train = np.array([r["train_loss"] for r in records])
    window = max(1, len(train) // 50)
    smooth = np.convolve(train, np.ones(window) / window, mode="valid")
    val = [(r["samples"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(samples[window - 1 :], smooth, label=f"train (mean of {window} steps)", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", ms=3)
    ax.set_xlabel("samples seen")
    ax.set_ylabel("loss (1000·MSE + λ·KL)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
