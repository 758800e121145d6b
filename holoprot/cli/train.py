"""`holoprot train`: option checks, progress wiring, then `holoprot.training.run.train`."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from holoprot.cli._checks import check_number
from holoprot.cli._common import InputsArg, WorkersOpt, app, stderr, user_errors
from holoprot.errors import HoloprotError


def parse_degree_weights(text: str | None) -> tuple[float, ...] | None:
    """``--degree-weights 10,1,1`` as a tuple of floats (their count and range are checked
    against the basis by `holoprot.training.run.train`, before any structure is read)."""
    if text is None:
        return None
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise HoloprotError(
            f"--degree-weights {text}: expected comma-separated numbers, one per degree"
        ) from None


@app.command()
def train(
    structures: InputsArg,
    out: Annotated[Path, typer.Option("--out", help="Run folder (created).")],
    config: Annotated[
        Path | None,
        typer.Option(
            help="JSON with model (and training) settings, or a preset architecture: hae-z128"
            " (the default), hae-z256."
        ),
    ] = None,
    vae: Annotated[bool, typer.Option("--vae", help="Variational model (KL warm-up).")] = False,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 10).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default 512).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-3).")] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(help="constant (the reference's AE) or cosine (per step, lr to --lr-final)."),
    ] = None,
    lr_final: Annotated[
        float | None, typer.Option(help="Final rate of the cosine / VAE schedule (2.5e-4).")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Linear warm-up of the learning rate over N steps (0).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batches.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Steps between checkpoints (default 100).")
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(help="Time budget of the training loop, s: stop then; cosine over time."),
    ] = None,
    degree_weights: Annotated[
        str | None,
        typer.Option(
            help="Loss weight per degree l = 0..L, e.g. 10,1,1,1,1,1,1 (default: plain MSE)."
        ),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Validate and save a moving average of the weights over ~1/(1-D) steps,"
            " e.g. 0.999 (default: none)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint.")
    ] = False,
    init: Annotated[
        str | None,
        typer.Option(help="Start from these weights (name or path), e.g. to continue training."),
    ] = None,
    groups: Annotated[
        Path | None, typer.Option(help="CSV structure_id,group: groups never straddle splits.")
    ] = None,
    group_pattern: Annotated[
        str | None,
        typer.Option(help="Regex on the structure id giving its group, e.g. '^([^_]+)'."),
    ] = None,
    split: Annotated[str, typer.Option(help="Train/validation/test fractions.")] = "0.8,0.1,0.1",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Coefficient cache (default OUT/dataset).")
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Train an H-(V)AE on your structures; writes OUT/model.safetensors + OUT/model.json."""
    from holoprot.training.run import train as run_training

    with user_errors():
        options = TrainOptions.check(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_schedule=lr_schedule,
            lr_final=lr_final,
            warmup_steps=warmup_steps,
            seed=seed,
            checkpoint_every=checkpoint_every,
            max_seconds=max_seconds,
            degree_weights=degree_weights,
            ema_decay=ema_decay,
            workers=workers,
            split=split,
        )
        progress = TrainingProgress()
        with progress.bar:
            model_path = run_training(
                structures,
                out,
                config_file=config,
                vae=vae,
                overrides=options.overrides,
                device=device,
                resume=resume,
                init=init,
                group_file=groups,
                group_pattern=group_pattern,
                fractions=options.fractions,
                cache_dir=cache_dir,
                workers=options.workers,
                on_file=progress.files_done,
                on_files_known=progress.files_known,
                on_step=progress.step,
                on_start=progress.start,
            )
        stderr.print(f"model written to {model_path}", highlight=False)


@dataclass(frozen=True)
class TrainOptions:
    """The `holoprot train` options checked before any structure is read: `overrides` of
    `holoprot.training.run.TrainSettings` (None: the config's or the default value),
    `fractions` (train, val, test) and `workers`. Build it with `check`."""

    overrides: dict[str, Any]
    fractions: tuple[float, float, float]
    workers: int | None

    @classmethod
    def check(
        cls,
        *,
        epochs: int | None,
        batch_size: int | None,
        lr: float | None,
        lr_schedule: str | None,
        lr_final: float | None,
        warmup_steps: int | None,
        seed: int | None,
        checkpoint_every: int | None,
        max_seconds: float | None,
        degree_weights: str | None,
        ema_decay: float | None,
        workers: int | None,
        split: str,
    ) -> TrainOptions:
        """Validate the options as typed on the command line (one HoloprotError naming the
        first bad one); ranges that depend on the basis or the data are checked by the run."""
        from holoprot.training.run import LR_SCHEDULES

        check_number("--epochs", epochs, minimum=1)
        check_number("--batch-size", batch_size, minimum=1)
        check_number("--lr", lr, above=0)
        check_number("--checkpoint-every", checkpoint_every, minimum=1)
        check_number("--workers", workers, minimum=0)
        check_number("--lr-final", lr_final, above=0)
        check_number("--warmup-steps", warmup_steps, minimum=0)
        per_degree = parse_degree_weights(degree_weights)
        if lr_schedule is not None and lr_schedule not in LR_SCHEDULES:
            raise HoloprotError(
                f"--lr-schedule {lr_schedule}: choose one of {', '.join(LR_SCHEDULES)}"
            )
        overrides = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "lr_schedule": lr_schedule,
            "lr_final": lr_final,
            "warmup_steps": warmup_steps,
            "seed": seed,
            "checkpoint_every": checkpoint_every,
            "max_seconds": max_seconds,
            "degree_weights": per_degree,
            "ema_decay": ema_decay,
        }
        return cls(overrides, parse_split(split), workers)


def parse_split(text: str) -> tuple[float, float, float]:
    """``--split 0.8,0.1,0.1`` as (train, val, test) fractions: three finite numbers >= 0, train
    and validation > 0."""
    try:
        fractions = tuple(float(f) for f in text.split(","))
    except ValueError:
        fractions = ()
    if (
        len(fractions) != 3
        or not all(math.isfinite(f) and f >= 0 for f in fractions)
        or fractions[0] <= 0
        or fractions[1] <= 0
    ):
        raise HoloprotError(
            f"--split {text}: need three fractions train,val,test (train and val > 0)"
        )
    return fractions  # type: ignore[return-value]


class TrainingProgress:
    """The training's progress on stderr: a bar for the structures read and one for the steps
    (live on a terminal; otherwise each validation is logged as a line). Its methods are the
    callbacks of `holoprot.training.run.train`."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=stderr,
            disable=not sys.stderr.isatty(),
        )
        self.tasks: dict[str, Any] = {}

    def files_known(self, n: int) -> None:
        self.tasks["files"] = self.bar.add_task("structures", total=n, info="")

    def files_done(self, n: int) -> None:
        self.bar.advance(self.tasks["files"], n)

    def start(self, trainer: Any) -> None:
        total = trainer.settings.epochs * trainer.steps_per_epoch
        self.tasks["steps"] = self.bar.add_task(
            "training", total=total, completed=trainer.global_step, info=""
        )
        stderr.print(
            f"training on {len(trainer.train_rows)} residues, validating on"
            f" {len(trainer.val_rows)}, {trainer.steps_per_epoch} steps per epoch,"
            f" device {trainer.device}",
            highlight=False,
        )

    def step(self, r: dict) -> None:
        info = (
            f"epoch {r['epoch'] + 1} step {r['step']} loss {r['train_loss']:.4g}"
            f" {r['samples_per_s']:.0f} samples/s"
        )
        if "val_loss" in r:
            info += f" val {r['val_loss']:.4g}"
            if self.bar.disable:  # no live bar: log validations as lines
                stderr.print(info, highlight=False)
        self.bar.update(self.tasks["steps"], advance=1, info=info)
