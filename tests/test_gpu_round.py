"""weights/gpu_round.py end to end on CPU: a small pack, a tiny model, a few seconds of training."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import torch

from holoprot.model import HVAE, HVAEConfig, load_model_file, save_model
from holoprot.training.pack import build_pack, load_pack
from holoprot.zernike.basis import ZernikeBasis

REPO = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data" / "structures"
TINY = {
    "latent_dim": 4,
    "ch_initial": 2,
    "ch_sizes": [2, 2, 2, 3, 4, 4],
    "lmax_list": [6, 6, 6, 4, 2, 1],
}


def _script():
    spec = importlib.util.spec_from_file_location("gpu_round", REPO / "weights" / "gpu_round.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_writes_what_the_device_tool_brings_back(tmp_path: Path) -> None:
    groups = tmp_path / "groups.csv"
    groups.write_text("structure_id,group,split\n1a8o,a,train\n1gbt,b,val\n19hc,c,test\n")
    files = [str(DATA / n) for n in ("1a8o.pdb", "1gbt.cif", "19hc.pdb.gz")]
    build_pack(files, tmp_path / "pack", group_file=groups, workers=0)
    torch.manual_seed(0)
    config = HVAEConfig(**TINY, irreps_in=ZernikeBasis().irreps, input_norm_const=0.3)
    init = save_model(HVAE(config), tmp_path / "tiny", {})
    out = tmp_path / "out"
    _script().main(
        ["run", "--pack", str(tmp_path / "pack"), "--out", str(out), "--work",
         str(tmp_path / "work"), "--device", "cpu", "--init", str(init), "--batch-size", "64",
         "--train-seconds", "3", "--deadline", "100000", "--bench-batches", "16,32",
         "--warmup-steps", "0", "--validations-per-epoch", "2"]
    )  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "log.txt", "loss_curve.png", "metrics.jsonl", "model.json", "model.safetensors",
        "report.json", "split.csv",
    ]  # fmt: skip
    # the device tool brings back at most 8 plain files of at most 16 MiB with plain names
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    assert all((out / n).stat().st_size < 16 * 2**20 for n in names)
    report = json.loads((out / "report.json").read_text())
    assert report["projection"]["neighbourhoods"] == load_pack(tmp_path / "pack").meta["n_residues"]
    assert set(report["encoder_residues_per_s"]) == {"16", "32"}
    assert report["training"]["steps"] >= 1 and report["training"]["budget_s"] == 3
    assert report["test"]["n"] > 0 and -1 <= report["test"]["cosine"] <= 1
    model, meta = load_model_file(out / "model")
    assert model.config.latent_dim == 4
    assert meta["initialised_from"] == str(init.with_suffix("")) and "test" in meta
    assert meta["settings"]["ema_decay"] == 0.998  # the saved model is the weight average
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == report["training"]["steps"] and "val_loss" in records[-1]
    split = (out / "split.csv").read_text().splitlines()
    assert split[0] == "source_path,structure_id,group,split" and len(split) == 4
