"""Model-card metrics of trained weights on the held-out test split of their training run.

    python weights/evaluate.py --weights holoprot/weights_data/hae-z128-bm5.safetensors \\
        --cache runs/cache-bm5-extra --split runs/hae-z128-bm5/split.csv \\
        --loss-curve runs/hae-z128-bm5/loss_curve.png --write

Prints the training summary and the metrics as Markdown (for weights/README.md). With
``--write`` the metrics go into the weights JSON under ``metadata["evaluation"]`` (the JSON is
re-written atomically; the .safetensors file is not touched, the JSON only holds its sha256) and
``--loss-curve`` (a PNG, copied, or a run's metrics.jsonl, plotted) becomes
``weights/<weights name>-loss.png`` (beside this script and the model card). Without ``--write``
nothing is written.

Invariance is measured on ``--invariance-structures``, by default ``--n-invariance`` test-split
structures drawn with the seed. See holoprot/evaluation.py for the definitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from holoprot.evaluation import evaluate_weights, read_split
from holoprot.hashing import check_seal, seal, sha256_file
from holoprot.training.trainer import plot_loss_curve
from holoprot.weights import resolve_weights

#: The model cards and loss curves live here; the weights files ship inside the package.
MODEL_CARD_DIR = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="weights name or .safetensors path")
    p.add_argument("--cache", required=True, help="dataset cache folder of the training run")
    p.add_argument("--split", required=True, help="split.csv of the training run")
    p.add_argument("--invariance-structures", nargs="+", default=None, metavar="FILE")
    p.add_argument("--n-invariance", type=int, default=2, help="test structures (default 2)")
    p.add_argument("--rotations", type=int, default=3, help="rotations per structure")
    p.add_argument("--max-test", type=int, default=20_000, help="test residues for cosines")
    p.add_argument("--max-probe-train", type=int, default=30_000)
    p.add_argument("--max-probe-test", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--loss-curve", type=Path, default=None, help="loss_curve.png or metrics.jsonl")
    p.add_argument("--write", action="store_true", help="store the metrics in the weights JSON")
    return p.parse_args()


def pick_test_structures(split_csv: str, n: int, seed: int) -> list[str]:
    """`n` test-split structure files (that exist here), drawn with `seed`."""
    files = sorted(s for s, split in read_split(split_csv).items() if split == "test")
    files = [f for f in files if Path(f).is_file()]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(files, min(n, len(files)), replace=False).tolist())


def training_markdown(meta: dict) -> str:
    data = meta.get("training_data", {})
    settings = meta.get("settings", {})
    hardware = meta.get("hardware", {})
    split = data.get("split_residues", {})
    rows = [
        ("structures (files)", f"{data.get('n_files')} ({data.get('n_failed_files')} failed)"),
        ("residues", f"{data.get('n_residues')} in {data.get('n_groups')} groups"),
        ("split (residues)", ", ".join(f"{k} {v}" for k, v in split.items())),
        ("split", f"fractions {data.get('fractions')}, seed {data.get('split_seed')}"),
        ("groups", f"file {data.get('group_file')}, pattern {data.get('group_pattern')}"),
        ("epochs planned", settings.get("epochs")),
        (
            "best model at",
            f"epoch index {meta.get('epoch')} (0-based), step {meta.get('global_step')}",
        ),
        ("samples seen", meta.get("samples_seen")),
        ("training wall time", f"{meta.get('wall_time_s')} s"),
        ("hardware", f"{hardware.get('device')} {hardware.get('cuda') or ''}".strip()),
        ("", f"{hardware.get('cpu_threads')} CPU threads, {hardware.get('platform')}"),
        ("validation", json.dumps(meta.get("validation"))),
    ]
    return "\n".join(["| training | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def metrics_markdown(ev: dict) -> str:
    rec, inv, probe, sl = ev["reconstruction"], ev["invariance"], ev["probe"], ev["slice"]
    per_l = rec["per_l"]
    lines = [
        f"Test split, seed {ev['seed']}, {ev['device']}, {ev['cpu_threads']} thread(s),"
        f" {ev['wall_time_s']} s.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| reconstruction cosine, plain (n = {rec['n']}) | {rec['overall']:.4f} |",
        f"| reconstruction cosine, √(2l+1)-weighted | {rec['weighted']:.4f} |",
        f"| latent invariance, max ‖z_R − z‖/‖z‖ ({inv['dtype']}) | {inv['max']:.2e} |",
        f"| latent invariance, mean | {inv['mean']:.2e} |",
        f"| frame error, max abs | {inv['frame_error_max']:.2e} |",
        f"| residue-type probe accuracy (train {probe['n_train']}, test {probe['n_test']})"
        f" | {probe['accuracy']:.4f} |",
        f"| probe majority baseline | {probe['majority_baseline']:.4f} |",
        "| for scale: the same probe on the input's rotation invariants"
        f" ({ev['input_invariants_probe']['n_features']} features, not latents)"
        f" | {ev['input_invariants_probe']['accuracy']:.4f} |",
        f"| slice probe accuracy (train {sl['n_train']}, test {sl['n_test']})"
        f" | {sl['accuracy']:.4f} |",
        "",
        "| l | " + " | ".join(str(l) for l in per_l) + " |",
        "|---|" + "---|" * len(per_l),
        "| cosine | " + " | ".join(f"{v:.4f}" for v in per_l.values()) + " |",
        "",
        "| residue | " + " | ".join(probe["per_class"]) + " |",
        "|---|" + "---|" * len(probe["per_class"]),
        "| accuracy | " + " | ".join(f"{v:.2f}" for v in probe["per_class"].values()) + " |",
        "",
        "Invariance structures: "
        + ", ".join(f"{p} ({r['n_residues']} residues)" for p, r in inv["structures"].items()),
    ]
    return "\n".join(lines)


def write_evaluation(stem: Path, evaluation: dict, loss_curve: Path | None) -> None:
    """Store `evaluation` in ``<stem>.json`` (atomically) and the loss curve beside the card."""
    sidecar = stem.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    check_seal(info, sidecar)  # only a sealed, unedited JSON is updated (and sealed again)
    if sha256_file(stem.with_suffix(".safetensors")) != info["sha256"]:
        raise SystemExit(f"{stem}.safetensors does not match the sha256 in {sidecar}")
    png = MODEL_CARD_DIR / f"{stem.name}-loss.png"
    if loss_curve is not None:
        if loss_curve.suffix == ".jsonl":
            plot_loss_curve(loss_curve, png)
        else:
            shutil.copyfile(loss_curve, png)
    if png.is_file():
        evaluation = {**evaluation, "loss_curve": png.name}
    info["metadata"]["evaluation"] = evaluation
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(seal(info), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, sidecar)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stem = resolve_weights(args.weights)
    structures = args.invariance_structures or pick_test_structures(
        args.split, args.n_invariance, args.seed
    )
    evaluation = evaluate_weights(
        stem.with_suffix(".safetensors"),
        args.cache,
        args.split,
        structures,
        max_test=args.max_test,
        max_probe_train=args.max_probe_train,
        max_probe_test=args.max_probe_test,
        n_rotations=args.rotations,
        seed=args.seed,
        device=args.device,
    )
    meta = json.loads(stem.with_suffix(".json").read_text())["metadata"]
    print(f"## {stem.name}\n\n{training_markdown(meta)}\n\n{metrics_markdown(evaluation)}")
    if args.write:
        write_evaluation(stem, evaluation, args.loss_curve)
        print(f"\nwrote metadata.evaluation to {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
