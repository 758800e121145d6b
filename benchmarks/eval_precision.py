"""What the encoder's bfloat16 mode (``HVAE.encode(x, precision="bf16")``) changes for a user:
latent error, the model card's linear probes, nearest-neighbour search hits and affinity.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 nice -n 5 python benchmarks/eval_precision.py \\
        --cache runs/cache-all --split runs/z256-r3/split.csv --pdbbind data/pdbbind

Rows: test residues, then probe-train residues of a training run's dataset cache, drawn as
``holoprot.evaluation.evaluate_weights`` draws them (``sample_rows_by_file`` with one
``np.random.default_rng(seed)``, test rows first), only fewer (``--max-test``,
``--max-probe-train``). Each row is encoded in fp64 (the model in float64: the reference), fp32
and bf16 (test rows) or fp32 and bf16 (train rows). Measured:

1. latent error per residue, ``‖z − z_fp64‖ / ‖z_fp64‖``, for fp32 and bf16, and the bf16
   frame's error against fp32's (per residue the largest ``‖row_bf16 − row_fp32‖`` of its three
   unit rows, about the angle in radians);
2. the logistic-regression probes of the model card (``logistic_probe``: SS3 and SS8 from DSSP,
   residue type; same seed and iterations) fitted and scored on fp32 latents, on bf16 latents,
   and the fp32 probe scored on bf16 test latents, with paired 95 % intervals of the differences;
3. search with the test rows as the index (cosine distance, exact, ``exact_search``): each test
   row's 10 nearest other rows under fp32 against bf16 (and fp64 against fp32, the floor), and
   the share of hits with the query's residue type and SS3 state;
4. with ``--pdbbind``: the ``hae`` features with the random forest on the CASF-2016 core split,
   as ``benchmarks/eval_affinity.py`` computes its core row (same functions, settings and seed),
   once from fp32 latents and once from bf16 latents, no feature cache; paired bootstrap 95 %
   intervals of the differences.

``Embedder(precision="bf16")`` refuses a CPU without bfloat16 hardware (torch would emulate it);
this script calls the encoder directly, so on such a CPU bf16 is emulated: operands and products
rounded to bfloat16 as the hardware rounds them, sums in fp32, so the numbers hold for bf16
hardware up to the order of accumulation. Prints a Markdown block for benchmarks/RESULTS.md;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, cpu_model  # noqa: E402

from holoprot._util.devices import bf16_supported  # noqa: E402
from holoprot.affinity import splits as sp  # noqa: E402
from holoprot.affinity.dataset import ComplexFiles, discover, join_labels  # noqa: E402
from holoprot.affinity.evaluate import evaluate_split, fit_split  # noqa: E402
from holoprot.affinity.features import (  # noqa: E402
    AGGREGATES,
    EmbedderLike,
    EmbeddingCache,
    FeatureTable,
    featurise,
)
from holoprot.affinity.forest import GRIDS  # noqa: E402
from holoprot.affinity.index import find_index_files, read_core_ids, read_labels  # noqa: E402
from holoprot.affinity.metrics import regression_metrics  # noqa: E402
from holoprot.affinity.pocket import DEFAULT_CUTOFF  # noqa: E402
from holoprot.embedding.embedder import Embedder  # noqa: E402
from holoprot.errors import HoloprotError  # noqa: E402
from holoprot.evaluation import (  # noqa: E402
    dssp_version,
    eight_state,
    logistic_probe,
    read_split,
    residue_type_labels,
    sample_rows_by_file,
    secondary_structure_labels,
    three_state,
)
from holoprot.model import HVAE  # noqa: E402
from holoprot.search.exact import exact_search, normalise  # noqa: E402
from holoprot.training.dataset import load_dataset  # noqa: E402
from holoprot.zernike.neighborhoods import Neighborhoods  # noqa: E402

TASKS = (("ss3", "secondary structure, 3 states"), ("ss8", "8 states"), ("type", "residue type"))
T = TypeVar("T")
#: z of the two-sided 95 % normal interval of a paired mean difference.
Z95 = 1.96


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def encode(
    model: HVAE,
    coefficients: np.ndarray,
    precision: str,
    batch: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent means (N, latent_dim) and frames (N, 3, 3) of raw `coefficients` (N, dim), the
    input cast to `dtype` (the model's), at `precision` (``HVAE.encode``), `batch` rows a call."""
    latents, frames = [], []
    with torch.no_grad():
        for start in range(0, len(coefficients), batch):
            x = torch.as_tensor(np.asarray(coefficients[start : start + batch])).to(dtype)
            z_mean, _, frame = model.encode(x, precision)
            latents.append(z_mean.numpy())
            frames.append(frame.numpy())
    return np.concatenate(latents), np.concatenate(frames)


@dataclass
class Bf16Embedder:
    """An fp32 `Embedder`'s projection, then its encoder at precision bf16: the `EmbedderLike`
    of ``holoprot.affinity.features`` (``Embedder(precision="bf16")`` refuses a CPU that would
    emulate bf16; measuring needs the emulation)."""

    embedder: Embedder

    @property
    def weights_name(self) -> str:
        return self.embedder.weights_name

    @property
    def weights_sha256(self) -> str:
        return self.embedder.weights_sha256

    @property
    def latent_dim(self) -> int:
        return self.embedder.latent_dim

    @property
    def radius(self) -> float:
        return self.embedder.radius

    def embed_neighborhoods(self, nbh: Neighborhoods) -> np.ndarray:
        with torch.no_grad():
            coefficients = self.embedder.basis.project_neighborhoods(nbh)
        return encode(self.embedder.model, coefficients, "bf16", self.embedder.batch_size)[0]


@dataclass(frozen=True)
class Residues:
    """The evaluated rows of a dataset cache with their coefficients and labels.

    Attributes:
        test, train: sorted rows of the cache's index.
        x_test, x_train: their raw coefficients, (N, dim) float32.
        labels: {task: (train labels, test labels)}, ``""`` where a row has none.
        n_files: (test files, train files); dssp_failed: files DSSP could not label.
    """

    test: np.ndarray
    train: np.ndarray
    x_test: np.ndarray
    x_train: np.ndarray
    labels: dict[str, tuple[np.ndarray, np.ndarray]]
    n_files: tuple[int, int]
    dssp_failed: list[str]


def _column(index: pa.Table, name: str) -> np.ndarray:
    return index.column(name).to_numpy(zero_copy_only=False).astype(str)


def load_residues(
    cache: Path, split_csv: Path, max_test: int, max_train: int, seed: int
) -> Residues:
    """Rows as ``evaluate_weights`` draws them for `seed`, their coefficients and labels (DSSP
    8-state code of the centre residue → SS3 and SS8 as the model card maps them; type)."""
    data = load_dataset(cache)
    split_of = read_split(split_csv)
    sources = _column(data.index, "source_path")
    unknown = sorted(set(sources) - set(split_of))
    if unknown:
        raise HoloprotError(f"{split_csv}: no split for {len(unknown)} file(s), e.g. {unknown[0]}")
    split = np.array([split_of[s] for s in sources])
    rng = np.random.default_rng(seed)
    test = sample_rows_by_file(rng, np.flatnonzero(split == "test"), sources, max_test)
    train = sample_rows_by_file(rng, np.flatnonzero(split == "train"), sources, max_train)
    model_number = data.manifest.get("settings", {}).get("model")
    dssp_test, failed_test = secondary_structure_labels(data.index, test, model_number)
    dssp_train, failed_train = secondary_structure_labels(data.index, train, model_number)
    residue_type = residue_type_labels(_column(data.index, "residue_name"))
    labels = {
        "ss3": (three_state(dssp_train), three_state(dssp_test)),
        "ss8": (eight_state(dssp_train), eight_state(dssp_test)),
        "type": (residue_type[train], residue_type[test]),
    }
    n_files = (len(np.unique(sources[test])), len(np.unique(sources[train])))
    return Residues(
        test,
        train,
        data.rows(test),
        data.rows(train),
        labels,
        n_files,
        failed_test + failed_train,
    )


def spread(values: np.ndarray) -> tuple[float, float, float]:
    """Median, 99th percentile and maximum."""
    return (
        float(np.median(values)),
        float(np.percentile(values, 99)),
        float(np.max(values)),
    )


def paired(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Mean of ``after − before`` over paired values and the half-width of its 95 % normal
    interval (1.96 standard errors of the mean difference)."""
    diff = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    return float(diff.mean()), float(Z95 * diff.std(ddof=1) / np.sqrt(len(diff)))


def latent_errors(
    z64: np.ndarray, latents: dict[str, np.ndarray], frames: dict[str, np.ndarray]
) -> dict[str, tuple[float, float, float]]:
    """Per-residue relative latent error against fp64 for each precision, and the bf16 frame's
    largest row error against fp32's."""
    norm = np.linalg.norm(z64, axis=1)
    errors = {
        name: spread(np.linalg.norm(z.astype(np.float64) - z64, axis=1) / norm)
        for name, z in latents.items()
    }
    row_error = np.linalg.norm(frames["bf16"] - frames["fp32"], axis=2).max(axis=1)
    errors["frame"] = spread(row_error)
    return errors


def probes(
    residues: Residues,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    seed: int,
    max_iter: int,
) -> dict[str, dict]:
    """Per task: the logistic probe fitted on fp32 train latents and scored on fp32 and bf16 test
    latents (one fit), and the probe fitted and scored on bf16 latents; rows without a label are
    left out."""
    results = {}
    for task, (y_train, y_test) in residues.labels.items():
        keep_train, keep_test = y_train != "", y_test != ""
        y = y_test[keep_test]
        fp32 = logistic_probe(
            train["fp32"][keep_train],
            y_train[keep_train],
            np.concatenate([test["fp32"][keep_test], test["bf16"][keep_test]]),
            np.concatenate([y, y]),
            seed,
            max_iter,
        )
        bf16 = logistic_probe(
            train["bf16"][keep_train],
            y_train[keep_train],
            test["bf16"][keep_test],
            y,
            seed,
            max_iter,
        )
        n = len(y)
        correct = {
            "fp32": fp32["correct"][:n],
            "bf16": bf16["correct"],
            "fp32 probe": fp32["correct"][n:],
        }
        predicted = {
            "fp32": fp32["predicted"][:n],
            "bf16": bf16["predicted"],
            "fp32 probe": fp32["predicted"][n:],
        }
        results[task] = {
            "n_train": int(keep_train.sum()),
            "n_test": n,
            "accuracy": {k: float(v.mean()) for k, v in correct.items()},
            "delta": {k: paired(correct["fp32"], correct[k]) for k in ("bf16", "fp32 probe")},
            "changed": {
                k: float(np.mean(predicted[k] != predicted["fp32"])) for k in ("bf16", "fp32 probe")
            },
            "converged": fp32["converged"] and bf16["converged"],
            "n_iter": (fp32["n_iter"], bf16["n_iter"]),
        }
    return results


def neighbours(latents: np.ndarray, k: int) -> np.ndarray:
    """Each row's `k` nearest other rows (cosine distance, exact; the row itself left out),
    (N, k) nearest first."""
    vectors = normalise(latents)
    _, rows = exact_search(vectors, vectors, k + 1)
    keep = rows != np.arange(len(rows))[:, None]
    keep[keep.all(axis=1), -1] = False  # the row itself beyond k + 1 (exact duplicates)
    return rows[keep].reshape(len(rows), k)


def search(
    latents: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int
) -> dict[str, dict]:
    """Hits of every test row among the test rows per precision; agreement of bf16 with fp32
    and of fp32 with fp64 (overlap@k, same top-1); share of each query's hits with its label."""
    hits = {name: neighbours(z, k) for name, z in latents.items()}

    def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        overlap = (a[:, :, None] == b[:, None, :]).any(axis=2).mean(axis=1)
        return {"overlap": float(overlap.mean()), "top1": float(np.mean(a[:, 0] == b[:, 0]))}

    shares = {}
    for task, y in labels.items():
        query = y != ""
        share = {name: (y[h[query]] == y[query][:, None]).mean(axis=1) for name, h in hits.items()}
        shares[task] = {
            "n": int(query.sum()),
            "share": {name: float(s.mean()) for name, s in share.items()},
            "delta": paired(share["fp32"], share["bf16"]),
        }
    return {
        "bf16 vs fp32": agreement(hits["fp32"], hits["bf16"]),
        "fp32 vs fp64": agreement(hits["fp64"], hits["fp32"]),
        "shares": shares,
    }


def labelled_complexes(root: Path, limit: int) -> tuple[list[ComplexFiles], list[Path], int]:
    """Complexes of a PDBbind-layout folder with a label (as ``eval_affinity.py`` loads them),
    the first `limit` of them (0: all), the index files and how many were skipped."""
    index_files = find_index_files(root)
    complexes, failures = discover(root)
    labels, _ = read_labels(index_files)
    complexes = join_labels(complexes, labels["neglog_affinity"].to_dict())
    kept = [c for c in complexes if c.label is not None]
    skipped = len(failures) + len(complexes) - len(kept)
    return (kept[:limit] if limit > 0 else kept), index_files, skipped


def paired_bootstrap(
    y: np.ndarray, predictions: dict[str, np.ndarray], seed: int, n_resamples: int = 1000
) -> dict[str, tuple[float, float]]:
    """Percentile 95 % intervals of bf16 − fp32 for RMSE, Pearson and Spearman over the same
    resamples of the test complexes (``regression_metrics`` of each)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_resamples, len(y)))
    diffs: dict[str, list[float]] = {"rmse": [], "pearson": [], "spearman": []}
    for rows in draws:
        fp32 = regression_metrics(y[rows], predictions["fp32"][rows])
        bf16 = regression_metrics(y[rows], predictions["bf16"][rows])
        for name, values in diffs.items():
            values.append(bf16[name] - fp32[name])
    intervals = {}
    for name, values in diffs.items():
        finite = np.asarray(values)[np.isfinite(values)]
        low, high = np.percentile(finite, [2.5, 97.5])
        intervals[name] = (float(low), float(high))
    return intervals


def affinity(args: argparse.Namespace, embedder: Embedder) -> dict:
    """The ``hae`` / rf / CASF-2016 core row of ``eval_affinity.py`` from fp32 and from bf16
    latents (no feature cache), and the paired differences."""
    complexes, index_files, skipped = labelled_complexes(args.pdbbind, args.max_complexes)
    makers: dict[str, EmbedderLike] = {"fp32": embedder, "bf16": Bf16Embedder(embedder)}
    tables: dict[str, FeatureTable] = {}
    seconds = {}
    for name, maker in makers.items():
        log(f"affinity: featurising {len(complexes)} complexes, {name}")
        start = time.perf_counter()
        tables[name] = featurise(
            complexes,
            ["hae"],
            embedder=maker,
            pocket_cutoff=args.pocket_cutoff,
            how=args.aggregate,
            cache=EmbeddingCache(None),
        )
        seconds[name] = time.perf_counter() - start
    ids = tables["fp32"].ids
    if tables["bf16"].ids != ids:
        raise HoloprotError("fp32 and bf16 featurised different complexes")
    core = sorted(set(read_core_ids(index_files)) & set(ids))
    split = sp.held_out(ids, core, method="CASF-2016 core", seed=args.seed)
    fit = {
        "grid": args.grid,
        "n_forests": args.n_forests,
        "grid_repeats": args.grid_repeats,
        "seed": args.seed,
    }
    metrics, predictions, best = {}, {}, {}
    labels = tables["fp32"].labels[tables["fp32"].rows(list(split.test))]
    for name, table in tables.items():
        log(f"affinity: forest on {name} features")
        model = fit_split(table, "hae", split, regressor="rf", n_jobs=1, **fit)
        result, frame = evaluate_split(model, table, "hae", split, seed=args.seed)
        metrics[name] = result["test"]
        predictions[name] = frame.loc[frame["split"] == "test", "prediction"].to_numpy()
        best[name] = model.best_params_
    x32, x16 = tables["fp32"].matrix("hae"), tables["bf16"].matrix("hae")
    return {
        "n": len(ids),
        "n_core": len(core),
        "skipped": skipped + len(tables["fp32"].failures),
        "metrics": metrics,
        "best": best,
        "interval": paired_bootstrap(labels, predictions, args.seed),
        "feature_error": spread(np.linalg.norm(x16 - x32, axis=1) / np.linalg.norm(x32, axis=1)),
        "prediction_r": float(np.corrcoef(predictions["fp32"], predictions["bf16"])[0, 1]),
        "prediction_diff": spread(np.abs(predictions["bf16"] - predictions["fp32"])),
        "seconds": seconds,
    }


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _signed(mean: float, half: float, digits: int = 4) -> str:
    return f"{mean:+.{digits}f} ± {half:.{digits}f}"


def _commit() -> str:
    def git(*argv: str) -> str:
        run = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return run.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def markdown(
    args: argparse.Namespace,
    embedder: Embedder,
    residues: Residues,
    errors: dict[str, tuple[float, float, float]],
    probe: dict[str, dict],
    found: dict[str, dict],
    aff: dict | None,
    timings: dict[str, float],
    load: tuple[float, float],
) -> str:
    """The Markdown block of every measurement."""
    n_test, n_train = len(residues.test), len(residues.train)
    lines = [
        f"Weights `{embedder.weights_name}` (sha256 {embedder.weights_sha256[:12]}…). Rows drawn"
        " as `evaluate_weights` draws them (`sample_rows_by_file`, seed"
        f" {args.seed}, test rows first): {n_test:,} test residues of {residues.n_files[0]}"
        f" files (the index of the search), {n_train:,} probe-train residues of"
        f" {residues.n_files[1]} files, split `{args.split}`, cache `{args.cache}`; DSSP"
        f" {dssp_version()} ({len(residues.dssp_failed)} file(s) failed).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} vCPU, torch {torch.__version__},"
        f" {torch.get_num_threads()} thread, load average {load[0]:.1f} at the start and"
        f" {load[1]:.1f} at the end (a training run and other work shared the machine);"
        f" bf16 hardware: {'yes' if bf16_supported('cpu') else 'no, torch emulated it'}"
        " (operands and products rounded to bfloat16 as hardware rounds them, sums in fp32: the"
        " numbers hold for bf16 hardware up to the order of accumulation);"
        f" {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit {_commit()}.",
        "",
        "Command: `" + shlex.join(["python", *sys.argv]) + "`",
        "",
        "Wall time "
        + f"{sum(timings.values()):.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ").",
        "",
        f"| latent error per test residue ({n_test:,}) | median | 99th percentile | max |",
        "|---|---|---|---|",
    ]
    titles = {
        "fp32": "fp32: ‖z − z_fp64‖ / ‖z_fp64‖",
        "bf16": "bf16: ‖z − z_fp64‖ / ‖z_fp64‖",
        "frame": "bf16 frame: largest ‖row_bf16 − row_fp32‖ of x̂, ŷ, ẑ",
    }
    for key, title in titles.items():
        median, p99, top = errors[key]
        digits = (lambda v: f"{v:.2e}") if key != "bf16" else _pct
        lines.append(f"| {title} | {digits(median)} | {digits(p99)} | {digits(top)} |")
    lines += [
        "",
        "Probes: logistic regression (`logistic_probe`, seed"
        f" {args.seed}, at most {args.probe_max_iter} iterations) as in the model card; accuracy"
        " on the test residues; differences with paired 95 % intervals (1.96 standard errors of"
        ' the per-residue difference); "changed": share of test residues whose predicted class'
        ' differs from the fp32 probe\'s on fp32 latents; "sampling": half-width of the 95 %'
        " binomial interval of the fp32 accuracy alone (another draw of test residues).",
        "",
        "| task | train / test | fp32 | bf16 (probe fitted on bf16) | fp32 probe on bf16"
        " latents | bf16 − fp32 | fp32 probe: bf16 − fp32 | changed (bf16 / fp32 probe)"
        " | sampling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, title in TASKS:
        p = probe[task]
        acc, delta, changed = p["accuracy"], p["delta"], p["changed"]
        lines.append(
            f"| {title} | {p['n_train']:,} / {p['n_test']:,} | {acc['fp32']:.4f}"
            f" | {acc['bf16']:.4f} | {acc['fp32 probe']:.4f} | {_signed(*delta['bf16'])}"
            f" | {_signed(*delta['fp32 probe'])} | {_pct(changed['bf16'])} /"
            f" {_pct(changed['fp32 probe'])}"
            f" | ± {Z95 * np.sqrt(acc['fp32'] * (1 - acc['fp32']) / p['n_test']):.4f} |"
        )
    unconverged = [t for t, _ in TASKS if not probe[t]["converged"]]
    if unconverged:
        lines += ["", f"Not converged within the iteration limit: {', '.join(unconverged)}."]
    agree, shares = found["bf16 vs fp32"], found["shares"]
    floor = found["fp32 vs fp64"]
    lines += [
        "",
        f"Search: the {n_test:,} test residues are the index and each is a query (cosine"
        f" distance, exact); its {args.k} nearest other residues.",
        "",
        "| hits | bf16 vs fp32 | fp32 vs fp64 (floor) |",
        "|---|---|---|",
        f"| mean overlap@{args.k} | {agree['overlap']:.4f} | {floor['overlap']:.4f} |",
        f"| same top-1 hit | {agree['top1']:.4f} | {floor['top1']:.4f} |",
        "",
        f"| share of the {args.k} hits with the query's label | queries | fp64 | fp32 | bf16"
        " | bf16 − fp32 (paired 95 %) |",
        "|---|---|---|---|---|---|",
    ]
    for task, title in (("type", "residue type"), ("ss3", "SS3 state")):
        s = shares[task]
        lines.append(
            f"| {title} | {s['n']:,} | {s['share']['fp64']:.4f} | {s['share']['fp32']:.4f}"
            f" | {s['share']['bf16']:.4f} | {_signed(*s['delta'])} |"
        )
    if aff is not None:
        lines += affinity_markdown(args, aff)
    return "\n".join(lines)


def affinity_markdown(args: argparse.Namespace, aff: dict) -> list[str]:
    """The affinity table: the same forest settings and split on fp32 and on bf16 features."""
    lines = [
        "",
        f"Affinity: `{args.pdbbind}`, {aff['n']} labelled complexes featurised ({aff['n_core']}"
        f" CASF-2016 core = test), {aff['skipped']} skipped; `hae` features (pocket residues,"
        f" Cα ≤ {args.pocket_cutoff:g} Å of the ligand, aggregate `{args.aggregate}`), rf with"
        f" grid `{args.grid}` ({args.grid_repeats} fits per point), ensemble of"
        f" {args.n_forests}, seed {args.seed}, as `eval_affinity.py`'s core row (one forest"
        " thread: the forests do not depend on it); no feature cache. Featurisation "
        + ", ".join(f"{k} {v:.0f} s" for k, v in aff["seconds"].items())
        + ". Brackets: bootstrap 95 % intervals over test complexes (`evaluate_split`); last"
        " row: paired percentile bootstrap of the differences (the same 1,000 resamples for"
        " both).",
        "",
        "| hae, rf, CASF-2016 core | n test | RMSE | Pearson | Spearman | grid point |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("fp32", "bf16"):
        m = aff["metrics"][name]
        cells = [
            f"{m[k]:.3f} [{m['ci95'][k][0]:.2f}, {m['ci95'][k][1]:.2f}]"
            for k in ("rmse", "pearson", "spearman")
        ]
        point = ", ".join(f"{k} {v}" for k, v in sorted(aff["best"][name].items()))
        lines.append(f"| {name} | {m['n']} | " + " | ".join(cells) + f" | {point} |")
    m32, m16, ci = aff["metrics"]["fp32"], aff["metrics"]["bf16"], aff["interval"]
    lines.append(
        "| bf16 − fp32 | | "
        + " | ".join(
            f"{m16[k] - m32[k]:+.3f} [{ci[k][0]:+.3f}, {ci[k][1]:+.3f}]"
            for k in ("rmse", "pearson", "spearman")
        )
        + " | |"
    )
    feature, diff = aff["feature_error"], aff["prediction_diff"]
    lines += [
        "",
        f"Complex features (sums of pocket latents), ‖x_bf16 − x_fp32‖ / ‖x_fp32‖: median"
        f" {_pct(feature[0])}, max {_pct(feature[2])}. Test predictions, bf16 against fp32:"
        f" Pearson r {aff['prediction_r']:.4f}, |difference| median {diff[0]:.3f}, max"
        f" {diff[2]:.3f} (−log10 M).",
    ]
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="default")
    p.add_argument("--cache", type=Path, default=Path("runs/cache-all"))
    p.add_argument("--split", type=Path, default=Path("runs/z256-r3/split.csv"))
    p.add_argument("--max-test", type=int, default=10_000, help="test residues")
    p.add_argument("--max-probe-train", type=int, default=20_000, help="probe-train residues")
    p.add_argument("--probe-max-iter", type=int, default=1000, help="lbfgs iterations at most")
    p.add_argument("--k", type=int, default=10, help="search hits per query")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--pdbbind", type=Path, default=None, help="PDBbind-layout folder")
    p.add_argument("--max-complexes", type=int, default=0, help="first N labelled (0: all)")
    p.add_argument("--pocket-cutoff", type=float, default=DEFAULT_CUTOFF)
    p.add_argument("--aggregate", default="sum", choices=AGGREGATES)
    p.add_argument("--grid", default="reference", choices=sorted(GRIDS))
    p.add_argument("--grid-repeats", type=int, default=3)
    p.add_argument("--n-forests", type=int, default=10)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    timings: dict[str, float] = {}

    def timed(step: str, work: Callable[[], T]) -> T:
        log(f"{step} …")
        start = time.perf_counter()
        result = work()
        timings[step] = time.perf_counter() - start
        log(f"{step}: {timings[step]:.1f} s")
        return result

    embedder = Embedder(args.weights, device="cpu")
    model = embedder.model
    residues: Residues = timed(
        "rows and DSSP",
        lambda: load_residues(
            args.cache, args.split, args.max_test, args.max_probe_train, args.seed
        ),
    )
    batch = embedder.batch_size
    model64 = copy.deepcopy(model).double()
    z64, _ = timed(
        "encode fp64", lambda: encode(model64, residues.x_test, "fp32", batch, torch.float64)
    )
    test, frames, train = {}, {}, {}
    for precision in ("fp32", "bf16"):
        test[precision], frames[precision] = timed(
            f"encode {precision}", lambda p=precision: encode(model, residues.x_test, p, batch)
        )
        train[precision], _ = timed(
            f"encode {precision} train",
            lambda p=precision: encode(model, residues.x_train, p, batch),
        )
    errors = latent_errors(z64, test, frames)
    probe = timed("probes", lambda: probes(residues, train, test, args.seed, args.probe_max_iter))
    test_labels = {task: residues.labels[task][1] for task in ("type", "ss3")}
    found = timed("search", lambda: search({"fp64": z64, **test}, test_labels, args.k))
    aff = timed("affinity", lambda: affinity(args, embedder)) if args.pdbbind else None
    print(
        markdown(
            args,
            embedder,
            residues,
            errors,
            probe,
            found,
            aff,
            timings,
            (load_start, os.getloadavg()[0]),
        )
    )


if __name__ == "__main__":
    main()
