"""Outputs of a training run: metrics.json, predictions.csv, a scatter PNG and a rich table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from holoprot.affinity.dataset import Failure
from holoprot.affinity.metrics import METRICS

PART_COLOURS = {"train": "#9e9e9e", "val": "#1f77b4", "test": "#d62728"}


def jsonable(value: Any) -> Any:
    """NaN/inf → None, numpy scalars/arrays → Python, recursively (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, record: Mapping[str, Any]) -> None:
    """Write `record` as indented strict JSON (NaN written as null)."""
    Path(path).write_text(json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n")


def write_failures(path: str | Path, failures: list[Failure]) -> None:
    """`skipped.csv`: id, stage, problem for every complex left out."""
    frame = pd.DataFrame([vars(f) for f in failures], columns=["id", "stage", "problem"])
    frame.to_csv(path, index=False)


def scatter_plot(path: str | Path, predictions: pd.DataFrame, title: str) -> None:
    """Predicted vs measured −log10 affinity PNG, one colour per split part, with y = x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.0, 5.0), dpi=120)
    try:
        for part, colour in PART_COLOURS.items():
            rows = predictions[predictions["split"] == part]
            if len(rows):
                axes.scatter(
                    rows["label"],
                    rows["prediction"],
                    s=12,
                    alpha=0.7,
                    color=colour,
                    label=f"{part} (n={len(rows)})",
                )
        values = predictions[["label", "prediction"]].to_numpy(dtype=float)
        low, high = np.nanmin(values) - 0.5, np.nanmax(values) + 0.5
        axes.plot([low, high], [low, high], color="black", linewidth=0.8)
        axes.set(
            xlim=(low, high),
            ylim=(low, high),
            aspect="equal",
            xlabel="measured −log10 K (M)",
            ylabel="predicted −log10 K (M)",
        )
        axes.set_title(title, fontsize=9, wrap=True)
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _cell(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _interval(interval: tuple[float, float]) -> str:
    if not all(v is not None and math.isfinite(v) for v in interval):
        return "–"
    return f"{interval[0]:.2f}–{interval[1]:.2f}"


def metrics_table(results: Mapping[str, Mapping[str, Any]], title: str) -> Table:
    """Rich table of {features: {part: metrics(+ 'ci95' for test)}}."""
    table = Table(title=title)
    table.add_column("features")
    table.add_column("part")
    table.add_column("n", justify="right")
    for name in METRICS:
        table.add_column(
            name.upper() if name in ("rmse", "mae") else name.capitalize(), justify="right"
        )
    for kind, parts in results.items():
        for part in ("train", "val", "test"):
            row = parts.get(part)
            if not row or not row.get("n"):
                continue
            table.add_row(kind, part, str(row["n"]), *(_cell(row[name]) for name in METRICS))
            if "ci95" in row:
                table.add_row("", "95% CI", "", *(_interval(row["ci95"][name]) for name in METRICS))
    return table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def comparison_scatter(path: str | Path, panels: Mapping[str, pd.DataFrame], title: str) -> None:
    """One panel per model (e.g. regressor) of test predictions vs labels, with y = x and the
    panel's RMSE and Pearson r; a small PNG (80 dpi)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), dpi=80)
    axes = np.atleast_1d(axes)
    try:
        values = np.concatenate(
            [f[["label", "prediction"]].to_numpy(float) for f in panels.values()]
        )
        low, high = np.nanmin(values) - 0.5, np.nanmax(values) + 0.5
        for ax, (name, frame) in zip(axes, panels.items(), strict=True):
            y, p = frame["label"].to_numpy(float), frame["prediction"].to_numpy(float)
            rmse = float(np.sqrt(np.mean((p - y) ** 2)))
            r = float(np.corrcoef(y, p)[0, 1]) if len(y) > 1 and np.ptp(p) > 0 else float("nan")
            ax.scatter(y, p, s=6, alpha=0.6, color="#d62728", linewidths=0)
            ax.plot([low, high], [low, high], color="black", linewidth=0.8)
            ax.set(xlim=(low, high), ylim=(low, high), aspect="equal", xlabel="measured pK")
            ax.set_title(f"{name}: RMSE {rmse:.2f}, r {r:.2f} (n={len(y)})", fontsize=8)
        axes[0].set_ylabel("predicted pK")
        figure.suptitle(title, fontsize=9)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def summary_bars(path: str | Path, rows: pd.DataFrame, metrics: tuple[str, ...]) -> None:
    """Grouped bars with 95% interval whiskers: one group per `label` row value, one bar per
    `series` value, one panel per metric. `rows` columns: label, series, <metric>, <metric>_low,
    <metric>_high."""
    plt = _pyplot()
    labels = list(dict.fromkeys(rows["label"]))
    series = list(dict.fromkeys(rows["series"]))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(
        len(metrics), 1, figsize=(max(6.0, 0.9 * len(labels)), 2.6 * len(metrics)), dpi=80
    )
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("tab10")
    try:
        for ax, metric in zip(axes, metrics, strict=True):
            for s, name in enumerate(series):
                part = rows[rows["series"] == name].set_index("label").reindex(labels)
                x = np.arange(len(labels)) + (s - (len(series) - 1) / 2) * width
                value = part[metric].to_numpy(float)
                error = np.abs(part[[f"{metric}_low", f"{metric}_high"]].to_numpy(float).T - value)
                ax.bar(x, value, width, yerr=error, capsize=2, color=colours(s), label=name)
            ax.set_xticks(np.arange(len(labels)), labels, fontsize=7)
            ax.set_ylabel(metric, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes[0].legend(fontsize=6, ncol=min(3, len(series)))
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
