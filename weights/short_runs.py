"""Short training runs from the same start, same batches, same validation residues: which
learning-rate schedule, or which loss weights per degree, gets furthest per sample when a round
continues from the default weights?

Each arm trains `--steps` steps of 512 on the same random subset of the train split (a fixed
permutation, one pass), from `--init`, with a fresh Adam state (as ``holoprot train --init``
does), validating on the same `--val-samples` validation residues before training and
`--validations` times during it. An arm is ``SCHEDULE``, optionally followed by ``/W0,…,W6``
(loss weights per degree, ``holoprot train --degree-weights``) and by ``@DECAY`` (validate and
save the moving average of the weights, ``holoprot train --ema-decay``). Prints a Markdown
table (validation loss = 1000 × the plain MSE of the normalised signal, whatever the arm's
weights) and writes every curve to OUT/short_runs.json; each arm's last weights (its average,
with ``@DECAY``) go to OUT/ARM/model.{safetensors,json}, ready for ``weights/evaluate.py``.

    python weights/short_runs.py --cache runs/cache-all --split runs/round5/split.csv \\
        --init default --steps 200 --out runs/lr --threads 1 \\
        --arms constant:1e-3 constant:3e-4 constant:1e-4 cosine:1e-3:1e-5 cosine:4e-4:1e-5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from holoprot.evaluation import read_split
from holoprot.model import HVAE, load_model_file, save_model
from holoprot.model.weights import resolve_weights
from holoprot.training.dataset import load_dataset
from holoprot.training.trainer import Trainer, TrainSettings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="coefficient cache of the training corpus")
    parser.add_argument("--split", required=True, help="split.csv of a training run")
    parser.add_argument("--init", default="default", help="weights every run starts from")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--validations", type=int, default=4)
    parser.add_argument("--val-samples", type=int, default=8192)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["constant:1e-3", "constant:3e-4", "cosine:1e-3:1e-5", "cosine:4e-4:1e-5"],
        help="constant:LR or cosine:LR:LR_FINAL, optionally /W0,...,W6 (loss weight per degree)"
        " and @DECAY (weight average)",
    )
    return parser.parse_args()


def parse_arm(text: str) -> dict:
    """TrainSettings fields of one arm, ``SCHEDULE[/W0,…,W6][@DECAY]``."""
    text_, _, decay = text.partition("@")
    schedule, _, weights = text_.partition("/")
    parts = schedule.split(":")
    try:
        fields = {
            "degree_weights": tuple(map(float, weights.split(","))) if weights else None,
            "ema_decay": float(decay) if decay else None,
        }
        if parts[0] == "constant" and len(parts) == 2:
            return {**fields, "lr_schedule": "constant", "lr": float(parts[1])}
        if parts[0] == "cosine" and len(parts) == 3:
            lr, lr_final = float(parts[1]), float(parts[2])
            return {**fields, "lr_schedule": "cosine", "lr": lr, "lr_final": lr_final}
    except ValueError:
        pass
    sys.exit(
        f"error: arm {text!r}: expected constant:LR or cosine:LR:LR_FINAL,"
        " then /W0,...,W6, then @DECAY"
    )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.cache)
    split = read_split(args.split)
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False)
    labels = np.array([split.get(s, "") for s in sources])
    rng = np.random.default_rng(args.seed)
    train_pool = np.flatnonzero(labels == "train")
    train_rows = np.sort(rng.choice(train_pool, args.steps * args.batch_size, replace=False))
    val_rows = np.flatnonzero(labels == "val")
    start, meta = load_model_file(resolve_weights(args.init))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    of_init_run = ("evaluation", "validation", "test", "epoch", "global_step", "wall_time_s")
    base = {k: v for k, v in meta.items() if k not in of_init_run}
    results = []
    for text in args.arms:
        settings = TrainSettings(
            epochs=1,
            batch_size=args.batch_size,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            checkpoint_every=10**9,
            validations_per_epoch=args.validations,
            max_validation_samples=args.val_samples,
            **parse_arm(text),
        )
        run = out / text.replace(":", "_").replace("/", "_w").replace(",", "-").replace("@", "_ema")
        run.mkdir(exist_ok=True)
        (run / "metrics.jsonl").unlink(missing_ok=True)
        torch.manual_seed(args.seed)
        model = HVAE(start.config)
        model.load_state_dict(start.state_dict())
        arm_meta = {**base, "initialised_from": str(args.init), "short_run": text}
        trainer = Trainer(
            model, data, train_rows, val_rows, run, settings, arm_meta, torch.device("cpu")
        )
        before = 1000 * trainer.validate()["recon_mse"]
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
        save_model(
            trainer.result_model,
            run / "model",
            {
                **arm_meta,
                "samples_seen": trainer.samples_seen,
                "wall_time_s": round(seconds, 1),
                "settings": asdict(settings),
            },
        )
        curve = [
            (r["samples"], 1000 * r["val_recon_mse"])
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "val_recon_mse" in r
        ]
        results.append({"arm": text, "start": before, "curve": curve, "seconds": seconds})
        print(f"{text}: {before:.4f} -> {curve[-1][1]:.4f} ({seconds:.0f} s)", flush=True)
    (out / "short_runs.json").write_text(
        json.dumps({"init": str(args.init), "args": vars(args), "results": results}, indent=1)
    )
    samples = [s for s, _ in results[0]["curve"]]
    print(
        f"\nvalidation loss (1000·MSE, {len(trainer.val_rows)} residues) vs samples,"
        f" from {args.init}:\n"
    )
    print("| arm | start | " + " | ".join(f"{s:,}" for s in samples) + " |")
    print("|---" * (len(samples) + 2) + "|")
    for r in results:
        cells = " | ".join(f"{v:.4f}" for _, v in r["curve"])
        print(f"| {r['arm']} | {r['start']:.4f} | {cells} |")


if __name__ == "__main__":
    main()
