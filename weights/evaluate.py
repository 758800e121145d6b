"""Model-card metrics of trained weights on the held-out test split of their training run.

    python weights/evaluate.py --weights holoprot/weights_data/hae-z128-bm5.safetensors \\
        --cache runs/cache-all --split runs/RUN/split.csv --groups weights/training-groups.csv \\
        --loss-curve runs/RUN/metrics.jsonl --write

Prints the training summary and the metrics as Markdown (the model card's generated section),
with timings on stderr. With ``--write`` the metrics go into the weights JSON under
``metadata["evaluation"]`` (the JSON is re-written atomically; the .safetensors file is not
touched, the JSON only holds its sha256), the Markdown replaces the section between
``<!-- evaluate.py: begin NAME -->`` and ``<!-- evaluate.py: end NAME -->`` of the model card
(``weights/README.md``, beside this script; NAME the weights' name) when it has these markers,
and ``--loss-curve`` (a PNG, copied, or a run's metrics.jsonl, plotted) becomes
``weights/<weights name>-loss.png``. Without ``--write`` nothing is written.

Secondary structure comes from DSSP (``mkdssp``, ``make dssp``). ``--groups`` with a ``set``
column splits the test figures into the groups held out for the first weights (sets bm5, extra)
and the new held-out groups. Invariance is measured on ``--invariance-structures``, by default
``--n-invariance`` test-split structures drawn with the seed. Definitions: holoprot/evaluation/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.evaluation import evaluate_weights, read_split
from holoprot.model.weights import model_files, resolve_weights
from holoprot.training.trainer import plot_loss_curve

#: The model cards and loss curves live here; the weights files ship inside the package.
MODEL_CARD_DIR = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="weights name or .safetensors path")
    p.add_argument("--cache", required=True, help="dataset cache folder of the training run")
    p.add_argument("--split", required=True, help="split.csv of the training run")
    p.add_argument(
        "--groups", default=None, help="groups file (structure_id,group[,split,set]) of the run"
    )
    p.add_argument("--invariance-structures", nargs="+", default=None, metavar="FILE")
    p.add_argument("--n-invariance", type=int, default=2, help="test structures (default 2)")
    p.add_argument("--rotations", type=int, default=3, help="rotations per structure")
    p.add_argument("--max-test", type=int, default=20_000, help="test residues for cosines")
    p.add_argument("--max-probe-train", type=int, default=50_000, help="train residues")
    p.add_argument("--knn", type=int, default=10, help="neighbours of the k-NN check")
    p.add_argument("--probe-max-iter", type=int, default=1000, help="lbfgs iterations at most")
    p.add_argument(
        "--invariants",
        action="store_true",
        help="also probe the input's 4,072 rotation invariants (slow)",
    )
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


SUBSET_TITLES = {
    "all": "all test residues",
    "old_test_groups": "old test groups (sets bm5, extra)",
    "new_test_groups": "new held-out groups (other sets)",
    "unlisted": "test structures not in the groups file",
}
FEATURE_TITLES = {
    "latent": "latent of these weights",
    "latent_random_init": "latent of a randomly initialised model (same architecture)",
    "input_l0": "input: the 44 l = 0 coefficients",
    "reconstruction_l0": "reconstruction: its 44 l = 0 coefficients",
    "input_invariants": "input: 4,072 rotation invariants",
    "majority_class": "majority class (k-NN: chance)",
}
TASKS = (("ss3", "secondary structure, 3 states"), ("ss8", "8 states"), ("residue_type", "type"))


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def metrics_markdown(ev: dict) -> str:
    rec, inv, sl, probes = ev["reconstruction"], ev["invariance"], ev["slice"], ev["probes"]
    rows = ev["rows"]
    subsets = list(rows["subsets"])
    lines = [
        f"Test split, seed {ev['seed']}: {rows['test']:,} test residues of {rows['test_files']}"
        " files ("
        + ", ".join(f"{SUBSET_TITLES.get(k, k)} {v:,}" for k, v in rows["subsets"].items())
        + f"); probes trained on {rows['probe_train']:,} train residues of"
        f" {rows['probe_train_files']} files. DSSP: {ev['dssp']['program']}"
        f" ({len(ev['dssp']['failed_files'])} file(s) failed). {ev['device']},"
        f" {ev['cpu_threads']} thread(s), {ev['wall_time_s']} s"
        f" ({', '.join(f'{k} {v} s' for k, v in ev['timings_s'].items())}).",
        "",
        "| reconstruction | residues | cosine loss (√(2l+1)-weighted) | cosine, plain"
        " | MSE (normalised units) | R² |",
        "|---|---|---|---|---|---|",
    ]
    for name in subsets:
        r = rec if name == "all" else rec["subsets"].get(name)
        if r is not None:
            lines.append(
                f"| {SUBSET_TITLES.get(name, name)} | {r['n']:,} | {r['weighted_cosine_loss']:.4f}"
                f" | {r['overall']:.4f} | {r['mse']:.3e} | {r['r2']:.4f} |"
            )
    degrees = list(rec["per_l"])
    lines += [
        "",
        "| all test residues, l | " + " | ".join(str(l) for l in degrees) + " |",
        "|---|" + "---|" * len(degrees),
        "| cosine loss | " + " | ".join(f"{1 - v:.4f}" for v in rec["per_l"].values()) + " |",
        "| MSE | " + " | ".join(f"{v:.2e}" for v in rec["per_l_mse"].values()) + " |",
        "| R² | " + " | ".join(f"{v:.4f}" for v in rec["per_l_r2"].values()) + " |",
    ]
    for name in subsets:
        counts = ", ".join(
            f"{label.split(',')[0]} {probes[task]['n_test'][name]:,}"
            f" (+{probes[task]['unlabelled_test'][name]} unlabelled)"
            for task, label in TASKS[::2]
        )
        lines += [
            "",
            f"Probes, {SUBSET_TITLES.get(name, name)} ({counts}); logistic regression accuracy"
            f" / fraction of the {ev['limits']['knn_k']} nearest train neighbours with the same"
            " label:",
            "",
            "| features | " + " | ".join(label for _, label in TASKS) + " | secondary structure"
            f" (3), {ev['limits']['knn_k']}-NN | type, {ev['limits']['knn_k']}-NN |",
            "|---|---|---|---|---|---|",
        ]
        for feature in probes["ss3"]["features"]:
            cells = [_f(probes[t]["features"][feature]["accuracy"][name]) for t, _ in TASKS]
            cells += [
                _f(probes[t]["features"][feature]["knn"][name]) for t in ("ss3", "residue_type")
            ]
            lines.append(f"| {FEATURE_TITLES.get(feature, feature)} | " + " | ".join(cells) + " |")
    per_class = sorted(probes["residue_type"]["per_class"].items(), key=lambda kv: -kv[1])
    lines += [
        "",
        "| other metrics | value |",
        "|---|---|",
        f"| latent invariance, max / mean ‖z_R − z‖/‖z‖ ({inv['dtype']})"
        f" | {inv['max']:.1e} / {inv['mean']:.1e} |",
        f"| frame equivariance, max \\|F_R − F·Rᵀ\\| | {inv['frame_error_max']:.1e} |",
        f"| residue-type probe on the bundled public slice (train {sl['n_train']},"
        f" test {sl['n_test']}) | {sl['accuracy']:.3f} |",
        "",
        "Residue-type probe on the latent, accuracy per type (all test residues): "
        + ", ".join(f"{k} {v:.2f}" for k, v in per_class)
        + ".",
        "",
        "Invariance structures: "
        + ", ".join(f"{p} ({r['n_residues']} residues)" for p, r in inv["structures"].items())
        + ".",
    ]
    return "\n".join(lines)


def card_markers(name: str) -> tuple[str, str]:
    """The lines around the generated section of weights `name` in the model card."""
    return f"<!-- evaluate.py: begin {name} -->", f"<!-- evaluate.py: end {name} -->"


def replace_card_section(card: Path, name: str, markdown: str) -> bool:
    """Put `markdown` between the :func:`card_markers` of `name` in `card` (atomically); False
    when the card or those markers are missing."""
    if not card.is_file():
        return False
    text = card.read_text()
    begin_marker, end_marker = card_markers(name)
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin < 0 or end < begin:
        return False
    new = f"{text[: begin + len(begin_marker)]}\n{markdown}\n{text[end:]}"
    tmp = card.with_name(f".{card.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, card)
    return True


def write_evaluation(stem: Path, evaluation: dict, loss_curve: Path | None) -> None:
    """Store `evaluation` in ``<stem>.json`` (atomically) and the loss curve beside the card."""
    weights, sidecar = model_files(stem)
    info = json.loads(sidecar.read_text())
    check_seal(info, sidecar)  # only a sealed, unedited JSON is updated (and sealed again)
    if sha256_file(weights) != info["sha256"]:
        raise SystemExit(f"{weights} does not match the sha256 in {sidecar}")
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
    weights, sidecar = model_files(stem)
    structures = args.invariance_structures or pick_test_structures(
        args.split, args.n_invariance, args.seed
    )
    evaluation = evaluate_weights(
        weights,
        args.cache,
        args.split,
        structures,
        groups_csv=args.groups,
        max_test=args.max_test,
        max_probe_train=args.max_probe_train,
        k=args.knn,
        max_iter=args.probe_max_iter,
        n_rotations=args.rotations,
        include_invariants=args.invariants,
        seed=args.seed,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    meta = json.loads(sidecar.read_text())["metadata"]
    metrics = metrics_markdown(evaluation)
    print(f"## {stem.name}\n\n{training_markdown(meta)}\n\n{metrics}")
    if args.write:
        write_evaluation(stem, evaluation, args.loss_curve)
        print(f"\nwrote metadata.evaluation to {sidecar}")
        card = MODEL_CARD_DIR / "README.md"
        if replace_card_section(card, stem.name, metrics):
            print(f"wrote the {stem.name} metrics section of {card}")
        else:
            begin, end = card_markers(stem.name)
            print(f"{card}: no {begin} … {end} section; paste the metrics above by hand")


if __name__ == "__main__":
    main()
