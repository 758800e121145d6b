"""`holoprot train-affinity` and `holoprot predict-affinity`.

The forest, evaluation and report modules (scikit-learn, skops, matplotlib) are imported inside
the commands, so other `holoprot` commands do not pay for them at start-up.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from holoprot._util.atomic import atomic_folder as _atomic_folder
from holoprot._util.atomic import atomic_path
from holoprot.cli._common import EXIT_SKIPPED, app, fail, overwrite_option
from holoprot.cli._common import stderr as console
from holoprot.errors import HoloprotError, InputError

if TYPE_CHECKING:  # imported by the functions that use them, to keep `holoprot --help` fast
    from rich.progress import Progress

    from holoprot.affinity import features as feats
    from holoprot.affinity import splits as sp
    from holoprot.affinity.dataset import ComplexFiles, Failure


class SplitChoice(str, Enum):
    random = "random"
    kfold = "kfold"
    core = "core"
    cluster_cv = "cluster-cv"


class AggregateChoice(str, Enum):
    sum = "sum"
    mean = "mean"
    sum_count = "sum+count"


class GridChoice(str, Enum):
    reference = "reference"
    small = "small"


# ------------------------------------------------------------------------------------ helpers


def _print_line(text: Text) -> None:
    """One unwrapped line on stderr (file names and messages are never markup)."""
    console.print(text, soft_wrap=True, highlight=False)


def _is_sealed(path: Path) -> bool:
    """Whether `path` is a JSON record sealed by holoprot (`holoprot._util.hashing.seal`)."""
    from holoprot._util.hashing import check_seal

    try:
        check_seal(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, ValueError, RecursionError, AttributeError, InputError):
        return False
    return True


def check_replaceable(out: Path) -> None:
    """Refuse to replace an existing folder `out` (`--overwrite`) unless it is empty or holds a
    model written by holoprot: a sealed forest.json or ridge.json in it or one level down."""
    from holoprot.affinity.models import metadata_files, model_folders

    if not out.is_dir() or not any(out.iterdir()):
        return
    names = metadata_files().values()
    if not any(_is_sealed(folder / name) for folder in model_folders(out) for name in names):
        raise InputError(
            out,
            "holds no affinity model written by holoprot (forest.json or ridge.json): not"
            " replacing it with --overwrite; name a new folder",
        )


@contextmanager
def atomic_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temp folder beside `out` that replaces `out` only if the block succeeds (an existing
    `out` only if `check_replaceable` allows it at that moment)."""
    out = out.resolve()
    if out.exists() and not overwrite:
        raise InputError(out, "already exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_folder(out, before_replace=check_replaceable) as work:
        yield work


def _load_complexes(
    data: Path | None,
    manifest: Path | None,
    index: Sequence[Path] | None,
    keep_inequalities: bool,
    measures: Sequence[str],
) -> tuple[list[ComplexFiles], list[Failure], list[Path]]:
    """Complexes with labels joined, the failures so far, and the index files used."""
    from holoprot.affinity.dataset import Failure, discover, join_labels, read_manifest
    from holoprot.affinity.index import find_index_files, read_labels

    if manifest is None and data is not None and data.is_file() and data.suffix.lower() == ".csv":
        manifest, data = data, None
    if manifest is not None:
        complexes, failures = read_manifest(manifest)
    elif data is not None:
        complexes, failures = discover(data)
    else:
        raise InputError("DATA", "give a PDBbind-layout folder or --manifest CSV")
    index_files = list(index) if index else find_index_files(data) if data is not None else []
    if index_files:
        labels, rejected = read_labels(
            index_files, keep_inequalities=keep_inequalities, measures=measures
        )
        complexes = join_labels(complexes, labels["neglog_affinity"].to_dict())
        reasons = rejected["reason"].to_dict()
    else:
        reasons = {}
    labelled = []
    for c in complexes:
        if c.label is not None:
            labelled.append(c)
        else:
            problem = reasons.get(c.id, "no label in the manifest or index files")
            failures.append(Failure(c.id, "label", problem))
    if not labelled:
        raise InputError(manifest or data, f"no labelled complexes ({len(failures)} skipped)")
    return labelled, failures, index_files


def _weights_argument(weights: str) -> str:
    """`--weights` as recorded: a name as given, a file as an absolute path."""
    return str(Path(weights).resolve()) if Path(weights).exists() else weights


def parse_feature_sets(values: Sequence[str]) -> list[str]:
    """`--features` values (repeated and/or comma-separated; `both` = hae, counts), in order,
    without repeats."""
    from holoprot.affinity import features as feats

    sets: list[str] = []
    for value in values:
        for item in value.split(","):
            for name in ["hae", "counts"] if item.strip() == "both" else [item.strip()]:
                feats.set_kinds(name)  # InputError naming the choices
                if name not in sets:
                    sets.append(name)
    if not sets:
        raise InputError("--features", "give at least one feature set")
    return sets


def parse_regressors(values: Sequence[str]) -> list[str]:
    """`--regressor` values (repeated and/or comma-separated), in order, without repeats."""
    from holoprot.affinity.models import REGRESSORS

    chosen: list[str] = []
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if name not in REGRESSORS:
                raise InputError("--regressor", f"unknown regressor {name!r} (choose rf, ridge)")
            if name not in chosen:
                chosen.append(name)
    return chosen


def model_folder_name(feature_set: str, regressor: str) -> str:
    """`hae+counts` for a forest, `hae+counts-ridge` for a ridge model."""
    return feature_set if regressor == "rf" else f"{feature_set}-{regressor}"


def _check_split_options(
    split_dir: Path | None, test_ids: Path | None, split: SplitChoice | None
) -> None:
    """Fail before featurising on conflicting or missing split inputs."""
    from holoprot.affinity import splits as sp

    if sum(x is not None for x in (split_dir, test_ids, split)) > 1:
        raise InputError("--split-dir/--test-ids/--split", "give at most one split option")
    if split_dir is not None and not split_dir.is_dir():
        raise InputError(split_dir, "split folder not found")
    if test_ids is not None:
        sp.read_id_list(test_ids)


def _make_splits(
    ids: list[str],
    table_splits: Sequence[str | None],
    *,
    split_dir: Path | None,
    test_ids: Path | None,
    split: SplitChoice | None,
    k_folds: int,
    index_files: Sequence[Path],
    seed: int,
    clusters: Any = None,
) -> list[sp.Split]:
    """The split (or k folds) for the featurised ids; see `train_affinity` for the default.
    `clusters`: the `clusters.Clusters` of `--split cluster-cv`."""
    from holoprot.affinity import splits as sp
    from holoprot.affinity.index import read_core_ids

    if split_dir is not None:
        return [sp.from_split_dir(ids, split_dir, seed=seed)]
    if test_ids is not None:
        return [
            sp.held_out(
                ids, sp.read_id_list(test_ids), method=f"test ids from {test_ids.name}", seed=seed
            )
        ]
    if split is SplitChoice.kfold:
        return sp.kfold_splits(ids, k_folds, seed=seed)
    if split is SplitChoice.cluster_cv:
        from holoprot.affinity.clusters import fold_splits

        return fold_splits(clusters, ids, seed=seed)
    if split is SplitChoice.core:
        core = set(read_core_ids(index_files)) & set(ids)
        if not core:
            raise InputError("--split core", "no CASF core complex (CoreSet.dat) among the data")
        return [sp.held_out(ids, core, method="CASF core set as test", seed=seed)]
    if split is SplitChoice.random:
        return [sp.random_split(ids, seed=seed)]
    if any(s is not None for s in table_splits):
        return [sp.from_column(dict(zip(ids, table_splits, strict=True)), seed=seed)]
    core = set(read_core_ids(index_files)) & set(ids)
    if core:
        return [sp.held_out(ids, core, method="CASF core set as test", seed=seed)]
    return [sp.random_split(ids, seed=seed)]


def _progress(total: int, label: str) -> tuple[Progress, Callable[[], None]]:
    from rich.progress import Progress

    progress = Progress(console=console, transient=True, disable=not console.is_terminal)
    task = progress.add_task(label, total=total)
    return progress, lambda: progress.advance(task)


# ------------------------------------------------------------------------------------ commands


@app.command("train-affinity")
def train_affinity(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="PDBbind-layout folder or manifest CSV (with --manifest: holds the index files)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")] = ...,
    manifest: Annotated[
        Path | None, typer.Option(help="CSV: id, protein, ligand[, label, split, pocket].")
    ] = None,
    index: Annotated[
        list[Path] | None,
        typer.Option(
            help="PDBbind index / CoreSet.dat files (default: found in DATA and DATA/index)."
        ),
    ] = None,
    split_dir: Annotated[
        Path | None, typer.Option(help="Folder with train/val/test id lists.")
    ] = None,
    test_ids: Annotated[Path | None, typer.Option(help="Id list held out as the test set.")] = None,
    split: Annotated[
        SplitChoice | None,
        typer.Option(
            help="core: CASF core as test; cluster-cv: k folds with no test protein >= "
            "--identity to a training one; kfold: random k folds; random: 80/10/10."
        ),
    ] = None,
    k_folds: Annotated[int, typer.Option(help="Folds for --split kfold / cluster-cv.")] = 5,
    identity: Annotated[
        float, typer.Option(help="Sequence-identity threshold of --split cluster-cv.")
    ] = 0.3,
    clusters_dir: Annotated[
        Path | None,
        typer.Option("--clusters", help="Reuse clusters saved by an earlier cluster-cv run."),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option(
            help="Feature sets, repeated or comma-separated: hae, zernike-l0, counts, "
            "hae+counts, hae+zernike-l0 (both = hae,counts)."
        ),
    ] = None,
    regressor: Annotated[
        list[str] | None,
        typer.Option(help="rf (random-forest ensemble) and/or ridge, repeated or comma-separated."),
    ] = None,
    weights: Annotated[str, typer.Option(help="H-(V)AE weights name or file.")] = "default",
    pocket_cutoff: Annotated[
        float, typer.Option(help="Å, pocket = residues with Cα this close to the ligand.")
    ] = 6.0,
    aggregate: Annotated[
        AggregateChoice, typer.Option(help="Pocket latents → complex vector.")
    ] = AggregateChoice.sum,
    n_forests: Annotated[int, typer.Option(help="Forests in the bootstrap ensemble.")] = 10,
    grid: Annotated[GridChoice, typer.Option(help="Random-forest grid.")] = GridChoice.reference,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Embedding cache (default ~/.cache/holoprot/affinity).")
    ] = None,
    ic50: Annotated[
        bool, typer.Option("--ic50/--no-ic50", help="Use IC50-based index labels too.")
    ] = True,
    keep_inequalities: Annotated[
        bool, typer.Option(help="Keep <, > labels at their bound.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of splits, resamples and forests.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
    overwrite: overwrite_option("an existing --out folder", negatable=True) = False,
) -> None:
    """Train affinity models (−log10 Kd/Ki), one per feature set and regressor.

    Default split: the manifest's `split` column; else the CASF core complexes as test when a
    CoreSet.dat is among the index files; else seeded random 80/10/10. Validation for the grid
    search is carved from training when the split gives none. With k folds the saved model is
    refitted on all complexes.
    """
    from holoprot.affinity import features as feats
    from holoprot.affinity import splits as sp
    from holoprot.affinity.report import metrics_table, write_failures, write_json
    from holoprot.cli._checks import check_number, check_output_folder

    try:
        check_number("--pocket-cutoff", pocket_cutoff, above=0)
        check_number("--k-folds", k_folds, minimum=2)
        check_number("--n-forests", n_forests, minimum=1)
        check_output_folder(out, overwrite=overwrite)
        check_replaceable(out)
        _check_split_options(split_dir, test_ids, split)
        feature_sets = parse_feature_sets(features or ["hae"])
        regressors = parse_regressors(regressor or ["rf"])
        measures = ("Kd", "Ki", "IC50") if ic50 else ("Kd", "Ki")
        complexes, failures, index_files = _load_complexes(
            data, manifest, index, keep_inequalities, measures
        )
        kinds = [
            k for k in feats.FEATURE_KINDS if any(k in feats.set_kinds(f) for f in feature_sets)
        ]
        embedder = feats.load_embedder(weights, device) if "hae" in kinds else None
        cache = feats.EmbeddingCache(cache_dir or feats.default_cache_dir())
        progress, tick = _progress(len(complexes), "featurising")
        with progress:
            table = feats.featurise(
                complexes,
                kinds,
                embedder=embedder,
                pocket_cutoff=pocket_cutoff,
                how=aggregate.value,
                cache=cache,
                progress=tick,
            )
        failures += table.failures
        if len(table.ids) < 3:
            raise HoloprotError(
                f"only {len(table.ids)} complexes could be featurised; need 3 or more"
            )
        console.print(
            f"{len(table.ids)} complexes featurised, {len(failures)} skipped"
            + (f"; embedded {table.n_embedded}, from cache {table.n_cached}" if embedder else "")
        )
        clusters = None
        if split is SplitChoice.cluster_cv:
            clusters = _clusters(complexes, table.ids, identity, k_folds, seed, clusters_dir)
        splits = _make_splits(
            table.ids,
            table.splits,
            split_dir=split_dir,
            test_ids=test_ids,
            split=split,
            k_folds=k_folds,
            index_files=index_files,
            seed=seed,
            clusters=clusters,
        )
        if len(splits) > 1:  # k folds: the saved model is refitted on everything
            splits.append(
                sp.held_out(table.ids, [], method="all complexes (final model)", seed=seed)
            )
        run_info = {
            "features": feature_sets,
            "regressors": regressors,
            "split_name": split.value if split is not None else None,
            "identity_threshold": clusters.threshold if clusters is not None else None,
            "pocket_cutoff": pocket_cutoff,
            "aggregate": aggregate.value if "hae" in kinds else None,
            "weights": _weights_argument(weights) if embedder else None,
            "weights_name": embedder.weights_name if embedder else None,
            "weights_sha256": embedder.weights_sha256 if embedder else None,
            "index_files": [p.name for p in index_files],
            "keep_inequalities": keep_inequalities,
            "label_measures": list(measures),
            "seed": seed,
            "n_complexes": len(table.ids),
            "n_skipped": len(failures),
            "n_embedded": table.n_embedded,
            "n_embeddings_from_cache": table.n_cached,
            "embedding_seconds_per_complex": table.embed_seconds / table.n_embedded
            if table.n_embedded
            else None,
            "zernike_seconds_per_complex": table.project_seconds / table.n_projected
            if table.n_projected
            else None,
            "n_rebuilt_atoms_dropped": table.n_rebuilt_dropped,
        }
        summary: dict[str, Any] = {"run": run_info}
        with atomic_folder(out, overwrite) as work:
            write_failures(work / "skipped.csv", failures)
            if clusters is not None:
                from holoprot.affinity.clusters import save_clusters

                save_clusters(clusters, work / "clusters")
            for feature_set in feature_sets:
                set_kinds = feats.set_kinds(feature_set)
                uses_hae = "hae" in set_kinds
                pocket = uses_hae or "zernike-l0" in set_kinds
                latent_dim = embedder.latent_dim if uses_hae else None
                info = run_info | {
                    "features": feature_set,
                    "feature_set": feature_set,
                    "feature_columns": feats.feature_columns(
                        feature_set, latent_dim, aggregate.value
                    ),
                    "weights": run_info["weights"] if uses_hae else None,
                    "aggregate": aggregate.value if pocket else None,
                    "weights_name": run_info["weights_name"] if uses_hae else None,
                    "weights_sha256": run_info["weights_sha256"] if uses_hae else None,
                }
                for name in regressors:
                    folder = model_folder_name(feature_set, name)
                    summary[folder] = _train_model(
                        work / folder, table, feature_set, name, splits, grid.value, n_forests,
                        seed, info | {"regressor": name},
                    )  # fmt: skip
            write_json(work / "metrics.json", summary)
        for folder in (model_folder_name(f, r) for f in feature_sets for r in regressors):
            shown = summary[folder].get("pooled_test") or summary[folder]
            console.print(metrics_table({folder: shown}, f"{folder}: {summary[folder]['split']}"))
        console.print(f"wrote {out}")
    except HoloprotError as exc:
        fail(str(exc))


def _clusters(
    complexes: Sequence[ComplexFiles],
    ids: Sequence[str],
    identity: float,
    k_folds: int,
    seed: int,
    saved: Path | None,
):
    """Clusters of the featurised complexes: loaded from `saved`, else aligned now."""
    from holoprot.affinity import clusters as cl

    if saved is not None:
        return cl.load_clusters(saved)
    chosen = set(ids)
    sequences, failed = cl.complex_sequences([c for c in complexes if c.id in chosen])
    if failed:
        raise HoloprotError(f"{failed[0].id}: no sequence for cluster-cv ({failed[0].problem})")
    console.print(f"aligning the sequences of {len(sequences)} complexes (cluster-cv)")
    return cl.cluster_complexes(sequences, threshold=identity, k=k_folds, seed=seed)


def _train_model(
    folder: Path,
    table: feats.FeatureTable,
    feature_set: str,
    regressor: str,
    splits: list[sp.Split],
    grid: str,
    n_forests: int,
    seed: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Fit, evaluate and save one (feature set, regressor); returns its metrics record."""
    import pandas as pd

    from holoprot.affinity.evaluate import cross_validate, evaluate_split, fit_split
    from holoprot.affinity.models import save_model
    from holoprot.affinity.report import scatter_plot, write_json

    folder.mkdir()
    extra = {"n_pocket": table.n_pocket} if info.get("aggregate") else {}
    side = pd.DataFrame({"id": table.ids, "ligand_source": table.ligand_source} | extra)
    fit = {"regressor": regressor, "grid": grid, "n_forests": n_forests, "seed": seed}
    if len(splits) == 1:
        final_split = splits[0]
        model = fit_split(table, feature_set, final_split, **fit)
        metrics, predictions = evaluate_split(model, table, feature_set, final_split, seed=seed)
        record = metrics | {"split": final_split.method, "best_params": model.best_params_}
    else:  # k folds, then a final model on all complexes
        record, predictions = cross_validate(table, feature_set, splits[:-1], **fit)
        final_split = splits[-1]
        model = fit_split(table, feature_set, final_split, **fit)
        record["final_model"] = final_split.method
    predictions = predictions.merge(side, on="id", how="left")
    predictions.to_csv(folder / "predictions.csv", index=False, float_format="%.4f")
    scatter_plot(folder / "scatter.png", predictions, f"{folder.name}: {record['split']}")
    write_json(folder / "metrics.json", record)
    save_model(model, regressor, folder, info | {"split": final_split.to_json()})
    return record


def _resolve_model_dir(model_dir: Path) -> Path:
    from holoprot.affinity.models import model_folders

    found = model_folders(model_dir)
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(model_dir, "no forest.json or ridge.json: not a train-affinity output")
    names = ", ".join(p.name for p in found)
    raise InputError(model_dir, f"holds {len(found)} models ({names}): name one of them")


def _folder_labels(
    folder: Path, found: list[ComplexFiles], measures: Sequence[str], keep_inequalities: bool
) -> list[ComplexFiles]:
    """`found` with labels from the index files in `folder` (or, for one complex's folder, in its
    parent), read with the model's label policy; unchanged when there are none."""
    from holoprot.affinity.dataset import join_labels
    from holoprot.affinity.index import find_index_files, read_labels

    index_files = find_index_files(folder) or find_index_files(folder.parent)
    if not index_files:
        return found
    labels, _ = read_labels(index_files, keep_inequalities=keep_inequalities, measures=measures)
    return join_labels(found, labels["neglog_affinity"].to_dict())


def _complexes_from_args(
    items: Sequence[str], measures: Sequence[str], keep_inequalities: bool
) -> tuple[list[ComplexFiles], list[Failure]]:
    from holoprot.affinity.dataset import discover, parse_pair, read_manifest

    complexes: list[ComplexFiles] = []
    failures: list[Failure] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found, failed = discover(path)
            if not found and not failed:
                raise InputError(path, "no <id>_protein/pocket.pdb + <id>_ligand.sdf/mol2 found")
            found = _folder_labels(path, found, measures, keep_inequalities)
        elif path.is_file() and path.suffix.lower() == ".csv":
            found, failed = read_manifest(path)
        elif ":" in item:
            found, failed = [parse_pair(item)], []
        else:
            raise InputError(item, "not a complex folder, manifest CSV or PROTEIN:LIGAND pair")
        complexes += found
        failures += failed
    ids = [c.id for c in complexes]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InputError(", ".join(duplicated[:5]), "complex id given more than once")
    return complexes, failures


@app.command("predict-affinity")
def predict_affinity(
    model_dir: Annotated[
        Path, typer.Argument(help="A train-affinity output folder (or one model in it).")
    ],
    complexes: Annotated[
        list[str], typer.Argument(help="Complex folders, PROTEIN:LIGAND pairs or manifest CSVs.")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV file (default: stdout).")
    ] = None,
    overwrite: overwrite_option("an existing --output file") = False,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Embedding cache (default ~/.cache/holoprot/affinity).")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Weights name or file, if moved (must have the model's sha256)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
) -> None:
    """Predict −log10 affinity with a saved model (refuses other weights or a modified model).

    `label` is the complex's known value, when a manifest or the index files of a given folder
    hold one; `ligand_source` the ligand file read (also for embeddings taken from the cache).
    """
    import pandas as pd

    from holoprot.affinity import features as feats
    from holoprot.affinity.models import feature_set_of, load_model, rebuildable_columns
    from holoprot.cli._checks import check_output_file

    try:
        if output is not None:
            check_output_file(output, overwrite=overwrite, resume=False, resumable=False)
        folder = _resolve_model_dir(model_dir)
        model, meta = load_model(folder)
        where = folder / f"{'ridge' if meta.get('regressor') == 'ridge' else 'forest'}.json"
        feature_set = feature_set_of(meta, where)
        kinds = feats.set_kinds(feature_set)
        embedder = None
        if "hae" in kinds:
            embedder = feats.load_embedder(
                weights or meta.get("weights") or meta["weights_name"], device
            )
            if embedder.weights_sha256 != meta["weights_sha256"]:
                raise InputError(
                    where,
                    f"model was trained with weights {meta['weights_name']} sha256 "
                    f"{meta['weights_sha256'][:12]}…, but those weights now have sha256 "
                    f"{embedder.weights_sha256[:12]}…: refusing to predict",
                )
        rebuildable_columns(meta, embedder.latent_dim if embedder else None, where)
        items, failures = _complexes_from_args(
            complexes,
            meta.get("label_measures", ("Kd", "Ki", "IC50")),
            bool(meta.get("keep_inequalities", False)),
        )
        n_given = len(items) + len(failures)
        start = time.perf_counter()
        table = feats.featurise(
            items,
            kinds,
            embedder=embedder,
            pocket_cutoff=meta["pocket_cutoff"],
            how=meta.get("aggregate") or "sum",
            cache=feats.EmbeddingCache(cache_dir or feats.default_cache_dir()),
        )
        failures += table.failures
        for failure in failures:
            _print_line(Text(f"skipped {failure.id} ({failure.stage}): {failure.problem}"))
        if not table.ids:
            raise HoloprotError(f"none of the {n_given} complex(es) could be featurised")
        each = model.predict_each(table.matrix(feature_set))
        frame = pd.DataFrame(
            {
                "id": table.ids,
                "prediction": each.mean(axis=0),
                "forest_std": each.std(axis=0),
                "label": table.labels,
                "ligand_source": table.ligand_source,
            }
        )
        if output is None:
            frame.to_csv(sys.stdout, index=False, float_format="%.4f")
        else:  # written beside, then renamed: a failed run never leaves half a file
            with atomic_path(output, suffix=".csv") as tmp:
                frame.to_csv(tmp, index=False, float_format="%.4f")
        console.print(
            f"{len(table.ids)} predicted, {len(failures)} skipped "
            f"in {time.perf_counter() - start:.1f} s"
        )
        if failures:
            raise typer.Exit(EXIT_SKIPPED)
    except HoloprotError as exc:
        fail(str(exc))
