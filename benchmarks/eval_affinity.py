"""Affinity evaluation on the PDBbind-layout data in data/pdbbind (unpacked from shared/, never
committed): H-(V)AE pocket embeddings vs the RF-Score counts baseline, on the same complexes.

1. Test = the CASF-2016 core complexes present (CoreSet.dat), train = all other labelled
   complexes, validation (for the grid search) carved from train.
2. Seeded 5-fold cross-validation over all labelled complexes (random folds; the data mixes
   CASF-2013 and CASF-2016 core targets, so same-target complexes fall on both sides: optimistic).

Reports RMSE, MAE, Pearson and Spearman with seeded bootstrap 95% intervals, and the embedding time
per complex (only for complexes embedded in this run; cached ones cost nothing). Prints a Markdown
block for benchmarks/RESULTS.md and, with --json, writes every number.

    python benchmarks/eval_affinity.py [--data data/pdbbind] [--weights default] [--device auto]
        [--grid reference] [--n-forests 10] [--cache-dir DIR | --no-cache] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

from holoprot.affinity import features as feats
from holoprot.affinity import splits as sp
from holoprot.affinity.dataset import Failure, discover, join_labels
from holoprot.affinity.evaluate import cross_validate, evaluate_split, fit_split
from holoprot.affinity.index import find_index_files, read_core_ids, read_labels
from holoprot.affinity.report import jsonable


def _fmt(metrics: dict, name: str) -> str:
    value = metrics[name]
    low, high = metrics.get("ci95", {}).get(name, (None, None))
    if value is None or not np.isfinite(value):
        return "–"
    if low is None or not np.isfinite(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f}, {high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/pdbbind"))
    parser.add_argument(
        "--features", nargs="+", default=["hae", "counts"], choices=feats.FEATURE_KINDS
    )
    parser.add_argument("--weights", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pocket-cutoff", type=float, default=6.0)
    parser.add_argument("--aggregate", default="sum", choices=feats.AGGREGATES)
    parser.add_argument("--grid", default="reference")
    parser.add_argument("--n-forests", type=int, default=10)
    parser.add_argument("--k-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--no-cache", action="store_true", help="Embed everything (for timing).")
    parser.add_argument("--json", type=Path, default=None, help="Write all numbers here.")
    args = parser.parse_args()

    index_files = find_index_files(args.data)
    complexes, failures = discover(args.data)
    labels, rejected = read_labels(index_files)
    complexes = join_labels(complexes, labels["neglog_affinity"].to_dict())
    reasons = rejected["reason"].to_dict()
    failures += [
        Failure(c.id, "label", reasons.get(c.id, "no label in the index files"))
        for c in complexes
        if c.label is None
    ]
    complexes = [c for c in complexes if c.label is not None]

    embedder = None
    if "hae" in args.features:
        embedder = feats.load_embedder(args.weights, args.device)
    cache = feats.EmbeddingCache(
        None if args.no_cache else args.cache_dir or feats.default_cache_dir()
    )
    start = time.perf_counter()
    table = feats.featurise(
        complexes, args.features, embedder=embedder, pocket_cutoff=args.pocket_cutoff,
        how=args.aggregate, cache=cache,
    )  # fmt: skip
    featurise_seconds = time.perf_counter() - start
    failures += table.failures

    core = sorted(set(read_core_ids(index_files)) & set(table.ids))
    core_split = sp.held_out(table.ids, core, method="CASF-2016 core as test", seed=args.seed)
    folds = sp.kfold_splits(table.ids, args.k_folds, seed=args.seed)
    results: dict[str, dict] = {}
    for kind in args.features:
        model = fit_split(
            table, kind, core_split, grid=args.grid, n_forests=args.n_forests, seed=args.seed
        )
        core_metrics, _ = evaluate_split(model, table, kind, core_split, seed=args.seed)
        cv_record, _ = cross_validate(
            table, kind, folds, grid=args.grid, n_forests=args.n_forests, seed=args.seed
        )
        results[kind] = {
            "core": core_metrics | {"best_params": model.best_params_},
            "cv": cv_record,
        }

    skipped = ", ".join(f"{k}: {v}" for k, v in Counter(f.stage for f in failures).items())
    lines = [
        f"### Protein–ligand affinity ({date.today().isoformat()})",
        "",
        f"Data: `{args.data}`, {len(table.ids)} labelled complexes featurised, "
        f"{len(failures)} skipped ({skipped or 'none'}); "
        f"labels −log10 Kd/Ki/IC50 (M) from {', '.join(p.name for p in index_files)}, "
        "censored (<, >) labels dropped.",
        f"Pocket: residues with Cα ≤ {args.pocket_cutoff:g} Å of a ligand heavy atom; "
        f"aggregate `{args.aggregate}`; forests: grid `{args.grid}`, ensemble of {args.n_forests}, "
        f"seed {args.seed}.",
    ]
    if embedder is not None:
        per = table.embed_seconds / table.n_embedded if table.n_embedded else None
        timing = (
            f"{1000 * per:.0f} ms per complex over {table.n_embedded} complexes "
            f"(pocket + neighbourhoods + projection + encoder; {table.n_cached} more from cache)"
            if per is not None
            else f"all {table.n_cached} embeddings came from the cache (--no-cache to time them)"
        )
        lines.append(
            f"Weights `{embedder.weights_name}` (sha256 {embedder.weights_sha256[:12]}…), "
            f"device `{args.device}`, {platform.machine()}: embedding {timing}."
        )
    lines.append(f"Featurisation wall time {featurise_seconds:.0f} s.")
    lines += [
        "",
        "| features | evaluation | n test | RMSE | MAE | Pearson | Spearman |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, record in results.items():
        test = record["core"]["test"]
        pooled = record["cv"]["pooled_test"]["test"]
        names = ("rmse", "mae", "pearson", "spearman")
        lines.append(
            f"| {kind} | CASF-2016 core "
            f"({len(core_split.train)} train / {len(core_split.val)} val) "
            f"| {test['n']} | " + " | ".join(_fmt(test, n) for n in names) + " |"
        )
        lines.append(
            f"| {kind} | {args.k_folds}-fold CV, pooled | {pooled['n']} | "
            + " | ".join(_fmt(pooled, n) for n in names)
            + " |"
        )
    lines += [
        "",
        "Brackets: seeded percentile bootstrap 95% intervals over test complexes. The core test "
        "shares targets with training complexes (CASF-2013 core and others), and the CV folds are "
        "random, so both are optimistic for new targets.",
    ]
    print("\n".join(lines))
    if args.json is not None:
        record = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "n_complexes": len(table.ids),
            "skipped": [vars(f) for f in failures],
            "embedding_seconds": table.embed_seconds,
            "n_embedded": table.n_embedded,
            "results": results,
        }
        args.json.write_text(json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
