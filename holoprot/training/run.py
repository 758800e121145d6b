"""`holoprot train` as a function: structures → cached coefficients → split → trained model.

The run folder receives the dataset cache (unless `cache_dir` points elsewhere), ``split.csv``
(structure, group, split), the trainer's checkpoints and metrics, and at the end
``model.safetensors`` + ``model.json``: the best-validation model with its config (architecture,
input-normalising constant), basis parameters, training-data summary, test metrics, holoprot
version and the sha256 of the weights.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from holoprot._util.atomic import atomic_path
from holoprot._util.devices import resolve_device
from holoprot.embedding.embedder import load_model
from holoprot.errors import HoloprotError, InputError
from holoprot.io.inputs import check_unique_ids, expand_inputs
from holoprot.model import HVAE, HVAEConfig, coefficient_weights, load_model_file, save_model
from holoprot.model.hvae import CONFIG_PRESETS
from holoprot.model.so3 import irreps_ls
from holoprot.training.averaging import check_decay
from holoprot.training.dataset import (
    CoefficientDataset,
    assign_groups,
    build_dataset,
    read_group_file,
    split_groups,
)
from holoprot.training.trainer import (
    LR_SCHEDULES,
    Trainer,
    TrainSettings,
    input_norm_constant,
    plot_loss_curve,
)
from holoprot.zernike.pipeline import ProjectionSettings

#: Keys of a --config JSON file besides HVAEConfig fields.
_SETTINGS_KEYS = {f for f in TrainSettings.__dataclass_fields__}


def read_config_file(path: str | os.PathLike | None) -> tuple[dict, dict]:
    """A JSON file with HVAEConfig fields and/or TrainSettings fields → (model, settings) dicts;
    or the name of a preset architecture (`CONFIG_PRESETS`, e.g. ``hae-z256``) where no such
    file exists."""
    if path is None:
        return {}, {}
    if str(path) in CONFIG_PRESETS and not Path(path).exists():
        return dict(CONFIG_PRESETS[str(path)]), {}
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable JSON config ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "config must be a JSON object")
    model_keys = set(HVAEConfig.__dataclass_fields__) - {"irreps_in", "input_norm_const"}
    unknown = sorted(set(raw) - model_keys - _SETTINGS_KEYS)
    if unknown:
        raise InputError(path, f"unknown config keys {unknown}")
    return (
        {k: v for k, v in raw.items() if k in model_keys},
        {k: v for k, v in raw.items() if k in _SETTINGS_KEYS},
    )


def _write_split(
    path: Path, data: CoefficientDataset, groups: np.ndarray, split: np.ndarray
) -> None:
    ids = data.index.column("structure_id").to_numpy(zero_copy_only=False)
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False)
    seen: dict[str, tuple[str, str, str]] = {}
    for sid, src, g, s in zip(ids, sources, groups, split, strict=True):
        seen.setdefault(src, (sid, g, s))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source_path", "structure_id", "group", "split"])
        for src, (sid, g, s) in seen.items():
            writer.writerow([src, sid, g, s])


@torch.no_grad()
def evaluate_reconstruction(
    model: HVAE, data: CoefficientDataset, rows: np.ndarray, device: torch.device
) -> dict[str, float]:
    """Test metrics: reconstruction MSE (normalised units) and mean cosine similarity."""
    model.eval()
    mse = cos = 0.0
    for start in range(0, len(rows), 1024):
        x = torch.from_numpy(data.rows(rows[start : start + 1024])).to(device)
        out = model(x, sample=False)
        mse += float(((out.recon - out.x_normalised) ** 2).mean(dim=1).sum())
        cos += float(torch.nn.functional.cosine_similarity(out.recon, out.x_normalised).sum())
    return {"recon_mse": mse / len(rows), "cosine": cos / len(rows), "n": int(len(rows))}


def train(
    structures: Sequence[str],
    run_dir: str | os.PathLike,
    *,
    config_file: str | os.PathLike | None = None,
    vae: bool = False,
    overrides: dict | None = None,
    device: str = "auto",
    resume: bool = False,
    init: str | os.PathLike | None = None,
    group_file: str | os.PathLike | None = None,
    group_pattern: str | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    on_file: Callable[[int], None] | None = None,
    on_files_known: Callable[[int], None] | None = None,
    on_step: Callable[[dict], None] | None = None,
    on_start: Callable[[Trainer], None] | None = None,
) -> Path:
    """Train an H-(V)AE on the residues of `structures`; returns the path of model.safetensors.

    `init` (a weights name or path) starts from trained weights — their architecture, input
    constant and parameters — with a fresh optimiser, e.g. to continue training elsewhere.

    `overrides` holds TrainSettings fields from the command line (epochs, batch_size, lr, seed,
    max_seconds, ...), which win over the config file.
    """
    run = Path(run_dir)
    if run.exists() and (run / "checkpoint.json").exists() and not resume:
        raise HoloprotError(f"{run}: already holds a training run; pass --resume or another --out")
    if resume and not (run / "checkpoint.json").exists():
        raise HoloprotError(f"{run}: no checkpoint to resume from")
    if init is not None and (resume or config_file is not None or vae):
        raise HoloprotError(
            "--init takes the architecture from the weights: no --resume/--config/--vae"
        )
    paths = [str(p) for p in expand_inputs(structures)]
    check_unique_ids(paths)  # two files of one structure_id would merge into one group
    run.mkdir(parents=True, exist_ok=True)
    model_fields, setting_fields = read_config_file(config_file)
    setting_fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        settings = TrainSettings(**setting_fields)
    except TypeError as exc:
        raise HoloprotError(f"invalid training settings: {exc}") from exc
    if settings.batch_size < 1 or settings.epochs < 1 or not settings.lr > 0:
        raise HoloprotError("--epochs, --batch-size and --lr must be positive")
    if settings.lr_schedule not in LR_SCHEDULES:
        raise HoloprotError(
            f"--lr-schedule {settings.lr_schedule}: choose one of {', '.join(LR_SCHEDULES)}"
        )
    if settings.warmup_steps < 0 or not settings.lr_final > 0:
        raise HoloprotError("--warmup-steps must be >= 0 and --lr-final positive")
    if settings.max_seconds is not None and not settings.max_seconds > 0:
        raise HoloprotError("--max-seconds must be positive")
    if settings.ema_decay is not None:
        try:
            check_decay(settings.ema_decay)
        except ValueError as exc:
            raise HoloprotError(f"--ema-decay: {exc}") from None
    proj = ProjectionSettings()
    if settings.degree_weights is not None:
        try:
            coefficient_weights(settings.degree_weights, proj.basis.irreps)
        except ValueError as exc:
            raise HoloprotError(f"--degree-weights: {exc}") from None
    torch_device = resolve_device(device)

    if on_files_known is not None:
        on_files_known(len(paths))
    data, failures = build_dataset(
        paths, cache_dir or run / "dataset", proj, workers=workers, on_file=on_file
    )
    ids = data.index.column("structure_id").to_numpy(zero_copy_only=False)
    mapping, pinned = read_group_file(group_file) if group_file else (None, None)
    groups = assign_groups(ids, mapping=mapping, pattern=group_pattern)
    split = split_groups(groups, fractions, seed=split_seed, pinned=pinned)
    _write_split(run / "split.csv", data, groups, split)
    rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    if len(rows["train"]) < 2 or len(rows["val"]) < 1:
        raise HoloprotError(
            f"too few neighbourhoods to train: {len(rows['train'])} train,"
            f" {len(rows['val'])} validation (need at least 2 and 1)"
        )
    basis_irreps = proj.basis.irreps
    start = None
    lineage: dict[str, str | None] = {"initialised_from": None, "initialised_from_sha256": None}
    if resume:
        stored = json.loads((run / "checkpoint.json").read_text())
        config = HVAEConfig.from_dict(stored["config"])
        lineage = {key: stored.get(key) for key in lineage}
    elif init is not None:  # continue from trained weights: same architecture and constant
        start, start_info = load_model(init, device="cpu")
        config = start.config
        lineage = {"initialised_from": str(init), "initialised_from_sha256": start_info["sha256"]}
    else:
        ls = irreps_ls(basis_irreps)
        norm = input_norm_constant(data, rows["train"], ls)
        try:
            config = HVAEConfig(
                **{**model_fields, "is_vae": vae or model_fields.get("is_vae", False)},
                irreps_in=basis_irreps,
                input_norm_const=norm,
            )
        except (TypeError, ValueError) as exc:
            raise HoloprotError(f"model config does not fit the data: {exc}") from exc
    if config.irreps_in != basis_irreps:
        raise HoloprotError(f"model expects irreps {config.irreps_in}, the data has {basis_irreps}")
    torch.manual_seed(settings.seed)
    model = HVAE(config)
    if start is not None:
        model.load_state_dict(start.state_dict())
    metadata = {
        "training_data": {
            "n_files": len(paths),
            "n_failed_files": len(failures),
            "n_residues": len(data),
            "n_groups": int(len(np.unique(groups.astype(str)))),
            "split_residues": {k: int(len(v)) for k, v in rows.items()},
            "split_seed": split_seed,
            "fractions": list(fractions),
            "group_file": str(group_file) if group_file else None,
            "group_pattern": group_pattern,
        },
        **lineage,
        "basis": proj.basis.metadata(),
        "radius": proj.radius,
        "hardware": {
            "device": str(torch_device),
            "cuda": torch.cuda.get_device_name() if torch_device.type == "cuda" else None,
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
    }
    trainer = Trainer(
        model, data, rows["train"], rows["val"], run, settings, metadata, torch_device
    )
    if resume:
        trainer.load_checkpoint()
    if on_start is not None:
        on_start(trainer)
    trainer.fit(on_step=on_step)
    plot_loss_curve(run / "metrics.jsonl", run / "loss_curve.png")
    return finish(run, data, rows["test"], torch_device)


def finish(
    run: Path, data: CoefficientDataset, test_rows: np.ndarray, device: torch.device
) -> Path:
    """Evaluate the best model on the test rows and save it as model.safetensors + model.json."""
    best, meta = load_model_file(run / "best", device=device)
    if len(test_rows):
        meta["test"] = evaluate_reconstruction(best, data, test_rows, device)
    return save_model(best, run / "model", meta)
