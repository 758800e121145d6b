"""How far the paper's bar is: each model's held-out metric against the samples seen, one point
per training round (`weights/learning-curve.csv`, from the model card's round tables; a `model`
column: hae-z128-bm5, hae-z256), and per model with at least 3 rounds a fit
L(S) = a + b · S^(−c) (S in millions of samples) extrapolated to the paper's ~20 M.

    python weights/learning_curve.py [--png weights/learning-curve.png]

Prints the fits through all rounds and through all but the first (the points mix corpora and
schedules: a guide, not a measurement) and plots the points, the fits and the paper's 0.156
(z = 128) and 0.102 (z = 256).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

HERE = Path(__file__).parent
PAPER_COSINE_LOSS = {"hae-z128-bm5": 0.156, "hae-z256": 0.102}  # L = 6 (PAPER-NUMBERS.md)
PAPER_SAMPLES_M = 20.0  # ~8 epochs of a few million neighbourhoods
#: Rounds a model needs before a fit is drawn: three points fix the three parameters exactly
#: and say nothing about where the curve goes (z256's three rounds, one after an annealed
#: schedule, extrapolated to 0.02 at 100 M samples).
MIN_FIT_POINTS = 4


def power_law(samples_m: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a + b · S^(−c), S in millions of samples."""
    return a + b * np.power(samples_m, -c)


def fit_power_law(samples_m: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (a, b, c) of :func:`power_law` through the points (≥ 3), a ≥ 0 (the
    cosine loss is never negative), b ≥ 0, c > 0."""
    if len(samples_m) < 3:
        raise ValueError("a power law with an offset needs at least 3 points")
    (a, b, c), _ = curve_fit(
        power_law,
        np.asarray(samples_m, float),
        np.asarray(loss, float),
        p0=(float(np.min(loss)) * 0.8, float(np.ptp(loss)) or 0.1, 0.8),
        bounds=([0.0, 0.0, 1e-3], [np.inf, np.inf, 10.0]),  # a loss is never negative
        maxfev=20000,
    )
    return float(a), float(b), float(c)


def read_rounds(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def by_model(rounds: list[dict]) -> dict[str, tuple[list[dict], np.ndarray, np.ndarray]]:
    """Each model's rounds with their samples seen (millions) and held-out losses, file order."""
    out: dict[str, tuple[list[dict], np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(r["model"] for r in rounds):
        mine = [r for r in rounds if r["model"] == name]
        samples = np.array([int(r["samples_seen"]) for r in mine]) / 1e6
        loss = np.array([float(r["weighted_cosine_loss_old_groups"]) for r in mine])
        out[name] = (mine, samples, loss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=HERE / "learning-curve.csv")
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    models = by_model(read_rounds(args.csv))
    fits: dict[str, dict[str, tuple[float, float, float]]] = {}
    for model, (rounds, s, loss) in models.items():
        print(
            f"\n{model}\n| round | samples | weighted cosine loss, old test groups |\n|---|---|---|"
        )
        for r, si, li in zip(rounds, s, loss, strict=True):
            print(f"| {r['round']} | {si:.2f} M | {li:.3f} |")
        fits[model] = {}
        for name, first in (("all rounds", 0), ("rounds after the first", 1)):
            if len(s) - first < MIN_FIT_POINTS:
                continue
            a, b, c = fit_power_law(s[first:], loss[first:])
            fits[model][name] = (a, b, c)
            at = power_law(np.array([PAPER_SAMPLES_M, 100.0]), a, b, c)
            print(
                f"fit through {name}: a = {a:.3f}, b = {b:.3f}, c = {c:.2f};"
                f" {at[0]:.3f} at {PAPER_SAMPLES_M:.0f} M samples, {at[1]:.3f} at 100 M"
                f" (paper: {PAPER_COSINE_LOSS.get(model, float('nan'))})"
            )
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        low = min(s.min() for _, s, _ in models.values())
        grid = np.geomspace(low, 100.0, 200)
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for (model, (_, s, loss)), colour in zip(models.items(), ("k", "tab:red"), strict=False):
            ax.plot(s, loss, "o", color=colour, label=f"{model} rounds (old test groups)")
            for (name, params), style in zip(fits[model].items(), ("-", "--"), strict=False):
                ax.plot(grid, power_law(grid, *params), style, lw=1, color=colour,
                        label=f"{model} fit, {name}")  # fmt: skip
            if model in PAPER_COSINE_LOSS:
                ax.axhline(PAPER_COSINE_LOSS[model], ls=":", color=colour, label=f"paper, {model}")
        ax.axvline(PAPER_SAMPLES_M, ls=":", color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("samples seen (millions)")
        ax.set_ylabel("weighted cosine loss, held-out")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png)
        plt.close(fig)


if __name__ == "__main__":
    main()
