"""How far the paper's bar is: the default weights' held-out metric against the samples seen,
one point per training round (`weights/learning-curve.csv`, from the model card's round table),
and a fit L(S) = a + b · S^(−c) (S in millions of samples) extrapolated to the paper's ~20 M.

    python weights/learning_curve.py [--png weights/hae-z128-bm5-learning-curve.png]

Prints the fits through all rounds and through all but the first (the points mix corpora and
schedules: a guide, not a measurement) and plots the points, both fits and the paper's 0.156.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

HERE = Path(__file__).parent
PAPER_COSINE_LOSS = 0.156  # z = 128, L = 6 (PAPER-NUMBERS.md)
PAPER_SAMPLES_M = 20.0  # ~8 epochs of a few million neighbourhoods


def power_law(samples_m: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a + b · S^(−c), S in millions of samples."""
    return a + b * np.power(samples_m, -c)


def fit_power_law(samples_m: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (a, b, c) of :func:`power_law` through the points (≥ 3), c > 0."""
    if len(samples_m) < 3:
        raise ValueError("a power law with an offset needs at least 3 points")
    (a, b, c), _ = curve_fit(
        power_law,
        np.asarray(samples_m, float),
        np.asarray(loss, float),
        p0=(float(np.min(loss)) * 0.8, float(np.ptp(loss)) or 0.1, 0.8),
        bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 10.0]),
        maxfev=20000,
    )
    return float(a), float(b), float(c)


def read_rounds(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=HERE / "learning-curve.csv")
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    rounds = read_rounds(args.csv)
    s = np.array([int(r["samples_seen"]) for r in rounds]) / 1e6
    loss = np.array([float(r["weighted_cosine_loss_old_groups"]) for r in rounds])
    print("| round | samples | weighted cosine loss, old test groups |\n|---|---|---|")
    for r, si, li in zip(rounds, s, loss, strict=True):
        print(f"| {r['round']} | {si:.2f} M | {li:.3f} |")
    fits = {}
    for name, first in (("all rounds", 0), ("rounds after the first", 1)):
        a, b, c = fit_power_law(s[first:], loss[first:])
        fits[name] = (a, b, c)
        at = power_law(np.array([PAPER_SAMPLES_M, 100.0]), a, b, c)
        print(
            f"\nfit through {name}: a = {a:.3f}, b = {b:.3f}, c = {c:.2f};"
            f" {at[0]:.3f} at {PAPER_SAMPLES_M:.0f} M samples, {at[1]:.3f} at 100 M"
            f" (paper: {PAPER_COSINE_LOSS})"
        )
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        grid = np.geomspace(s.min(), 100.0, 200)
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        ax.plot(s, loss, "o", color="k", label="rounds (old test groups)")
        for name, params in fits.items():
            ax.plot(grid, power_law(grid, *params), lw=1, label=f"fit, {name}")
        ax.axhline(PAPER_COSINE_LOSS, ls="--", color="grey", label="paper, z = 128")
        ax.axvline(PAPER_SAMPLES_M, ls=":", color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("samples seen (millions)")
        ax.set_ylabel("weighted cosine loss, held-out")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png)
        plt.close(fig)


if __name__ == "__main__":
    main()
