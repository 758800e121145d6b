"""holoprot.training.averaging.WeightAverage and the trainer's weight average (`--ema-decay`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch import nn
from typer.testing import CliRunner

from holoprot.cli import app
from holoprot.evaluation import read_split
from holoprot.model import HVAE, HVAEConfig, hvae_loss, load_model_file
from holoprot.training.averaging import WeightAverage
from holoprot.training.dataset import load_dataset

EXAMPLES = Path(__file__).parents[1] / "examples"
DATA = Path(__file__).parent / "data" / "structures"
FILES = [EXAMPLES / "1hvr.pdb", EXAMPLES / "4zhl.cif", DATA / "1a8o.pdb", DATA / "1gbt.cif"]
SMALL = {"latent_dim": 4, "ch_initial": 2, "ch_sizes": [2, 2, 2, 3, 4, 4]}
SMALL |= {"lmax_list": [6, 6, 6, 4, 2, 1], "checkpoint_every": 2}
runner = CliRunner()


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _float_state(module: nn.Module) -> dict[str, np.ndarray]:
    state = module.state_dict().items()
    return {k: v.double().numpy().copy() for k, v in state if v.is_floating_point()}


def test_average_follows_its_formula_by_hand() -> None:
    """avg ← d_t avg + (1 − d_t) θ_t with d_t = min(decay, (1 + t)/(10 + t)); counters copied."""
    torch.manual_seed(0)
    model = _model()
    average = WeightAverage(model, decay=0.5)
    expected = _float_state(model)
    decays = []
    for t in range(1, 11):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # moves the batch-norm statistics and its counter
        d = min(0.5, (1 + t) / (10 + t))
        decays.append(d)
        assert average.current_decay() == d
        average.update(model)
        current = _float_state(model)
        expected = {k: d * expected[k] + (1 - d) * current[k] for k in expected}
        got = _float_state(average.module)
        for k in expected:  # float32 state, one rounding per update: relative 1e-6
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=1e-7, err_msg=k)
        assert int(average.module[1].num_batches_tracked) == t
    assert average.updates == 10 and not average.module.training
    assert all(not p.requires_grad for p in average.module.parameters())
    assert decays[0] == pytest.approx(2 / 11) and decays[6] < 0.5 and decays[7:] == [0.5] * 3


def test_average_starts_as_a_copy_and_refuses_bad_decays() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.99)
    assert average.current_decay() == pytest.approx(2 / 11)
    for k, v in _float_state(model).items():
        np.testing.assert_array_equal(_float_state(average.module)[k], v)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(average.module[0].weight, model[0].weight)  # a copy, not a view
    for decay in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(model, decay)


def _run(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _checkpoint(run: Path) -> tuple[dict[str, np.ndarray], dict]:
    info = json.loads((run / "checkpoint.json").read_text())
    return load_file(str(run / "checkpoint.safetensors")), info


def test_training_validates_and_saves_the_average(tmp_path: Path) -> None:
    """The logged validation loss is that of the averaged weights, which the checkpoint holds
    beside the trained ones and which the best model is."""
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--config", config, "--batch-size", "64", "--workers", "0", "--cache-dir", cache]
    _run("train", *FILES, "--out", out, "--ema-decay", "0.9", *common, "--epochs", "1")
    tensors, info = _checkpoint(out)
    assert info["average_updates"] == info["global_step"] > 1
    keys = {k[6:] for k in tensors if k.startswith("model.")}
    assert keys == {k[8:] for k in tensors if k.startswith("average.")}
    assert any(not np.array_equal(tensors[f"model.{k}"], tensors[f"average.{k}"]) for k in keys)

    data = load_dataset(cache)
    split = read_split(out / "split.csv")
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False)
    x = torch.from_numpy(data.rows(np.flatnonzero([split[s] == "val" for s in sources])))
    assert len(x)

    def val_loss(model: HVAE) -> float:
        with torch.no_grad():
            return hvae_loss(model.eval()(x, sample=False))[1]["loss"]

    config_ = HVAEConfig.from_dict(info["config"])
    averaged, trained = HVAE(config_), HVAE(config_)
    averaged.load_state_dict({k: torch.from_numpy(tensors[f"average.{k}"]) for k in keys})
    trained.load_state_dict({k: torch.from_numpy(tensors[f"model.{k}"]) for k in keys})
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    last, best_record = records[-1], [r for r in records if r.get("best")][-1]
    assert last["step"] == info["global_step"] and "val_loss" in last
    # float32 sums in another batch order: relative 1e-5; the trained weights are further off
    assert val_loss(averaged) == pytest.approx(last["val_loss"], rel=1e-5)
    assert val_loss(trained) != pytest.approx(last["val_loss"], rel=1e-3)
    best, meta = load_model_file(out / "best")
    assert meta["global_step"] == best_record["step"]
    assert val_loss(best) == pytest.approx(best_record["val_loss"], rel=1e-5)


def test_resume_keeps_the_average_or_starts_it(tmp_path: Path) -> None:
    """A resumed run's average equals the uninterrupted run's bit for bit; a resume that turns
    the average on starts it from the resumed weights."""
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    common = ["--config", config, "--batch-size", "64", "--workers", "0"]
    common += ["--cache-dir", tmp_path / "cache"]
    full, split, late = tmp_path / "full", tmp_path / "split", tmp_path / "late"
    ema = ["--ema-decay", "0.9"]
    _run("train", *FILES, "--out", full, "--epochs", "2", *ema, *common)
    _run("train", *FILES, "--out", split, "--epochs", "1", *ema, *common)
    _run("train", *FILES, "--out", split, "--epochs", "2", "--resume", *ema, *common)
    (a, info_a), (b, info_b) = _checkpoint(full), _checkpoint(split)
    assert a.keys() == b.keys() and info_a["average_updates"] == info_b["average_updates"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    _run("train", *FILES, "--out", late, "--epochs", "1", *common)
    first, info = _checkpoint(late)
    assert not any(k.startswith("average.") for k in first) and info["average_updates"] is None
    _run("train", *FILES, "--out", late, "--epochs", "2", "--resume", *ema, *common)
    second, info2 = _checkpoint(late)
    assert info2["average_updates"] == info2["global_step"] - info["global_step"] > 0
    for k in (k for k in a if k.startswith("model.")):  # the same trained weights as `full`
        np.testing.assert_array_equal(second[k], a[k], err_msg=k)
    assert any(not np.array_equal(second[k], a[k]) for k in a if k.startswith("average."))
