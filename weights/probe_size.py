"""Secondary-structure probe accuracy against the number of probe-training residues.

The model cards' probes (``weights/evaluate.py``) train on 50,000 residues; the paper's figure
(≈ 90 % for z = 128, L = 6) trains its logistic regression on 300,000. This script repeats the
card's 3-state probe on the latent for several train sizes, with the card's test rows:

    python weights/probe_size.py --weights hae-z128-bm5 hae-z256 --cache runs/cache-all \\
        --split runs/z256-r5/split.csv --groups weights/training-groups.csv \\
        --sizes 50000 100000 300000

Rows are drawn as ``evaluate_weights`` draws them (:func:`holoprot.evaluation.draw_sample`, the
same seed: test rows first, then the probe-train rows from whole files), once per size, so the
50,000 row repeats the model card's figure. DSSP runs once per file of all the draws; the latents
come from the Embedder (the CPU encoder on a CPU), in chunks, so memory stays at one chunk of
coefficients plus the latents. Prints a Markdown table; timings go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from holoprot.embedding import Embedder
from holoprot.evaluation import (
    draw_sample,
    logistic_probe,
    secondary_structure_labels,
    three_state,
)
from holoprot.training.dataset import load_dataset

CHUNK = 16_384


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", required=True, help="weights names or paths")
    p.add_argument("--cache", required=True, help="dataset cache folder of the training run")
    p.add_argument("--split", required=True, help="split.csv of the training run")
    p.add_argument("--groups", default=None, help="groups file with a set column")
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000, 300_000])
    p.add_argument("--max-test", type=int, default=20_000)
    p.add_argument("--probe-max-iter", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the encoder")
    return p.parse_args()


def _log(start: float, message: str) -> None:
    print(f"{time.perf_counter() - start:7.1f} s  {message}", file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    data = load_dataset(args.cache)
    samples = {
        n: draw_sample(data.index, args.split, args.cache, args.groups, args.max_test, n, args.seed)
        for n in args.sizes
    }
    test = samples[args.sizes[0]].test
    masks = samples[args.sizes[0]].masks
    if any(not np.array_equal(s.test, test) for s in samples.values()):
        raise SystemExit("the test rows differ between sizes (they are drawn first)")
    rows = np.unique(np.concatenate([test, *(s.train for s in samples.values())]))
    model_number = data.manifest.get("settings", {}).get("model")
    ss8, failed = secondary_structure_labels(data.index, rows, model_number)
    ss3 = three_state(ss8)
    _log(start, f"DSSP of {len(rows):,} rows ({len(failed)} file(s) failed)")

    def position(r: np.ndarray) -> np.ndarray:
        return np.searchsorted(rows, r)

    header = "| weights | " + " | ".join(f"{n:,} train" for n in args.sizes) + " |"
    lines = [header, "|---|" + "---|" * len(args.sizes)]
    subsets = [name for name in masks if masks[name].any()]
    for weights in args.weights:
        embedder = Embedder(weights, device="cpu")
        if args.threads:
            embedder.use_threads(args.threads)
        latent = np.concatenate(
            [
                embedder.embed_coefficients(data.rows(rows[i : i + CHUNK])).latent
                for i in range(0, len(rows), CHUNK)
            ]
        )
        _log(start, f"{embedder.weights_name}: encoded {len(rows):,} rows")
        test_x, test_y = latent[position(test)], ss3[position(test)]
        cells = []
        for sample in samples.values():
            train_x, train_y = latent[position(sample.train)], ss3[position(sample.train)]
            keep_train, keep_test = train_y != "", test_y != ""
            probe = logistic_probe(
                train_x[keep_train],
                train_y[keep_train],
                test_x[keep_test],
                test_y[keep_test],
                seed=args.seed,
                max_iter=args.probe_max_iter,
            )
            accuracy = {
                name: float(probe["correct"][masks[name][keep_test]].mean()) for name in subsets
            }
            n_files = len(np.unique(sample.sources[sample.train]))
            _log(
                start,
                f"{embedder.weights_name}: {int(keep_train.sum()):,} train rows of {n_files} files,"
                f" {probe['n_iter']} iterations: "
                + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()),
            )
            cells.append(" / ".join(f"{accuracy[name]:.3f}" for name in subsets))
        lines.append(f"| `{embedder.weights_name}` | " + " | ".join(cells) + " |")
    print(
        "3-state secondary-structure probe (logistic regression on the standardised latent) on "
        f"{len(test):,} test residues, accuracy: " + " / ".join(subsets) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
