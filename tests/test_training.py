"""`holoprot train`: dataset cache, group splits, normalising constant, outputs, exact resume."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from holoprot._util.hashing import seal
from holoprot.cli import app
from holoprot.errors import InputError
from holoprot.evaluation import read_split
from holoprot.model import HVAE, HVAEConfig, hvae_loss, load_model_file
from holoprot.model.so3 import irreps_ls
from holoprot.training import dataset as dataset_module
from holoprot.training.dataset import (
    assign_groups,
    build_dataset,
    load_dataset,
    read_group_file,
    split_groups,
)
from holoprot.training.trainer import TrainSettings, input_norm_constant
from holoprot.zernike.pipeline import ProjectionSettings

DATA = Path(__file__).parent / "data" / "structures"
EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
FILES = [EXAMPLES / "1hvr.pdb", EXAMPLES / "4zhl.cif", DATA / "1a8o.pdb", DATA / "1gbt.cif"]
SMALL = {
    "latent_dim": 4,
    "ch_initial": 2,
    "ch_sizes": [2, 2, 2, 3, 4, 4],
    "lmax_list": [6, 6, 6, 4, 2, 1],
    "checkpoint_every": 2,
}
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    return path


def test_groups_never_straddle_splits() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"g{i}" for i in range(40)], rng.integers(1, 50, 40))
    split = split_groups(groups, (0.8, 0.1, 0.1), seed=1)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    fractions = {s: np.mean(split == s) for s in ("train", "val", "test")}
    assert 0.65 < fractions["train"] < 0.9 and fractions["val"] > 0 and fractions["test"] > 0
    assert np.array_equal(split, split_groups(groups, (0.8, 0.1, 0.1), seed=1))
    assert not np.array_equal(split, split_groups(groups, (0.8, 0.1, 0.1), seed=2))


def test_every_split_gets_a_group_and_too_few_groups_fail() -> None:
    split = split_groups(np.array(["a", "b", "c"]))
    assert sorted(split) == ["test", "train", "val"]
    with pytest.raises(Exception, match="only 2 structure group"):
        split_groups(np.array(["a", "a", "b"]))


def test_pinned_groups_keep_their_split_and_the_rest_split_as_alone() -> None:
    rng = np.random.default_rng(0)
    old = np.repeat([f"g{i}" for i in range(40)], rng.integers(1, 50, 40))
    old_split = split_groups(old, seed=0)
    pinned = {g: old_split[old == g][0] for g in np.unique(old)}
    new = np.repeat([f"n{i}" for i in range(30)], rng.integers(1, 50, 30))
    both = np.concatenate([new[:100], old, new[100:]])
    split = split_groups(both, seed=0, pinned=pinned)
    in_old = np.isin(both, old)
    np.testing.assert_array_equal(split[in_old], old_split)
    np.testing.assert_array_equal(split[~in_old], split_groups(new, seed=0))
    np.testing.assert_array_equal(split_groups(old, seed=5, pinned=pinned), old_split)


def test_group_file_pins_splits_and_refuses_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("structure_id,group,split\n1AKJ_r_u,1AKJ,test\n1BD2,1AKJ,test\n3piv,3piv,\n")
    mapping, pinned = read_group_file(path)
    assert mapping == {"1AKJ_r_u": "1AKJ", "1BD2": "1AKJ", "3piv": "3piv"}
    assert pinned == {"1AKJ": "test"}
    path.write_text("structure_id,group,split\n1AKJ_r_u,1AKJ,test\n1BD2,1AKJ,train\n")
    with pytest.raises(InputError, match="line 3: group '1AKJ' pinned to two splits"):
        read_group_file(path)
    path.write_text("structure_id,group,split\n1AKJ_r_u,1AKJ,testing\n")
    with pytest.raises(InputError, match="line 2: split 'testing' is not one of"):
        read_group_file(path)


def test_assign_groups_mapping_then_pattern() -> None:
    ids = ["1AKJ_r_u", "1AKJ_l_b-matched", "1BD2", "3pivA"]
    groups = assign_groups(ids, mapping={"1BD2": "1AKJ"}, pattern=r"^([^_]+)_")
    assert list(groups) == ["1AKJ", "1AKJ", "1AKJ", "3pivA"]


def test_dataset_cache_is_reused_and_norm_constant(tmp_path: Path, monkeypatch) -> None:
    settings = ProjectionSettings()
    paths = [str(p) for p in FILES[:2]]
    data, failures = build_dataset(paths, tmp_path / "cache", settings, workers=0)
    assert failures == [] and len(data) == data.index.num_rows > 300
    rows = np.array([5, 0, len(data) - 1, 5])
    first = data.rows(rows)

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(dataset_module, "iter_projected", boom)
    again, _ = build_dataset(paths, tmp_path / "cache", settings, workers=0)
    np.testing.assert_array_equal(again.rows(rows), first)
    np.testing.assert_array_equal(first[0], first[3])
    # SPEC §3.5: mean over rows of sqrt(Σ_f x_f² / (2 l_f + 1))
    ls = irreps_ls(settings.basis.irreps)
    all_rows = np.arange(len(data))
    x = data.rows(all_rows).astype(np.float64)
    expected = np.mean(np.sqrt((x**2 / (2 * ls + 1)).sum(axis=1)))
    assert input_norm_constant(data, all_rows, ls) == pytest.approx(expected, rel=1e-12)


def test_kl_and_lr_schedules_follow_the_reference() -> None:
    s = TrainSettings(lr=2.5e-3, lr_final=2.5e-4)
    assert [s.kl_weight(e, True) for e in range(8)] == [0, 0, 0, 0, 0, 0.5, 0.5, 0.5]
    assert [s.kl_weight(e, False) for e in range(3)] == [0, 0, 0]
    lrs = [s.learning_rate(e, True) for e in range(6)]
    np.testing.assert_allclose(
        lrs, [2.5e-3, 1.1604e-3, 5.386e-4, 2.5e-4, 2.5e-4, 2.5e-4], rtol=1e-3
    )
    assert s.learning_rate(3, False) == 2.5e-3


def test_cosine_schedule_with_warmup() -> None:
    s = TrainSettings(lr=1e-3, lr_final=1e-5, lr_schedule="cosine", warmup_steps=10)
    total = 1000
    lrs = np.array([s.learning_rate(0, False, t, total) for t in range(total + 1)])
    cosine = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * np.arange(total + 1) / total))
    warm = np.minimum(1.0, (np.arange(total + 1) + 1) / 10)
    np.testing.assert_allclose(lrs, cosine * warm, rtol=1e-12)
    assert lrs[500] == pytest.approx((1e-3 + 1e-5) / 2) and lrs[-1] == pytest.approx(1e-5)
    assert np.all(np.diff(lrs[10:]) <= 0)


#: The fixed or guessable temporary names earlier versions wrote a run folder's files under (this
#: process's id in some): a link planted there must be replaced, never written through.
OLD_TEMPORARY_NAMES = [
    ".checkpoint.safetensors.tmp",
    ".checkpoint.json.tmp",
    ".split.csv.tmp",
    ".loss_curve.png.tmp.png",
    ".model.safetensors.{pid}.tmp",
    ".model.json.{pid}.tmp",
    ".best.safetensors.{pid}.tmp",
    ".best.json.{pid}.tmp",
    "dataset/.index.parquet.tmp-{pid}",
    "dataset/.shard-00000.npy.tmp-{pid}",
    "dataset/.manifest.json.tmp-{pid}",
]


def test_train_writes_a_loadable_model(tmp_path: Path, small_config: Path) -> None:
    """(With loss weights per degree: the logged loss is the weighted one, λ·recon_mse is not.)

    Links planted in the run folder at the temporary names of earlier versions lead to files
    outside it, which must stay as they were (issue #28)."""
    out = tmp_path / "run"
    (out / "dataset").mkdir(parents=True)
    (tmp_path / "victims").mkdir()
    for i, name in enumerate(OLD_TEMPORARY_NAMES):
        victim = tmp_path / "victims" / str(i)
        victim.write_bytes(b"precious")
        (out / name.format(pid=os.getpid())).symlink_to(victim)
    result = run(
        "train", *FILES, "--out", out, "--config", small_config, "--epochs", "1",
        "--batch-size", "128", "--workers", "0", "--degree-weights", "10,1,1,1,1,1,1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for victim in (tmp_path / "victims").iterdir():
        assert victim.read_bytes() == b"precious", OLD_TEMPORARY_NAMES[int(victim.name)]
    for name in ("model.safetensors", "model.json", "metrics.jsonl", "loss_curve.png", "split.csv"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    for name in ("checkpoint.safetensors", "checkpoint.json", "dataset/index.parquet"):
        assert not (out / name).is_symlink(), name
    model, meta = load_model_file(out / "model")
    assert model.config.latent_dim == 4 and model.config.input_norm_const > 0
    assert meta["training_data"]["n_files"] == 4
    assert -1 <= meta["test"]["cosine"] <= 1 and meta["test"]["n"] > 0
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and "val_loss" in records[-1]
    assert all(r["train_loss"] != pytest.approx(1000 * r["train_recon_mse"]) for r in records)
    assert meta["settings"]["degree_weights"] == [10, 1, 1, 1, 1, 1, 1]
    # a second run into the same folder must not overwrite it silently
    again = run("train", *FILES, "--out", out, "--config", small_config, "--workers", "0")
    assert again.exit_code == 1 and "--resume" in again.output


@pytest.mark.parametrize("average", [[], ["--ema-decay", "0.9"]], ids=["plain", "averaged"])
def test_resume_continues_exactly(tmp_path: Path, small_config: Path, average: list[str]) -> None:
    """(With a weight average: the checkpoint's average too, bit for bit.)"""
    common = ["--config", small_config, "--batch-size", "128", "--workers", "0", *average]
    cache = tmp_path / "cache"
    full, split = tmp_path / "full", tmp_path / "split"
    a = run("train", *FILES, "--out", full, "--epochs", "2", "--cache-dir", cache, *common)
    assert a.exit_code == 0, a.output
    b = run("train", *FILES, "--out", split, "--epochs", "1", "--cache-dir", cache, *common)
    assert b.exit_code == 0, b.output
    c = run(
        "train", *FILES, "--out", split, "--epochs", "2", "--resume", "--cache-dir", cache, *common
    )
    assert c.exit_code == 0, c.output
    ta, tc = (
        load_file(str(full / "checkpoint.safetensors")),
        load_file(str(split / "checkpoint.safetensors")),
    )
    assert ta.keys() == tc.keys()
    assert any(k.startswith("average.") for k in ta) == bool(average)
    for k in ta:
        np.testing.assert_array_equal(ta[k], tc[k], err_msg=k)
    info = json.loads((split / "checkpoint.json").read_text())
    full_info = json.loads((full / "checkpoint.json").read_text())
    assert info["average_updates"] == full_info["average_updates"]
    log_a = (full / "metrics.jsonl").read_text().splitlines()
    log_c = (split / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in log_a] == [json.loads(ln)["step"] for ln in log_c]

    (split / "checkpoint.json").write_text(json.dumps(info | {"global_step": 1}))
    d = run(
        "train", *FILES, "--out", split, "--epochs", "3", "--resume", "--cache-dir", cache, *common
    )
    assert d.exit_code == 1 and "checkpoint.json: metadata_sha256 does not match" in d.output


def _checkpoint(run_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    info = json.loads((run_dir / "checkpoint.json").read_text())
    return load_file(str(run_dir / "checkpoint.safetensors")), info


def test_resume_that_turns_the_average_on_starts_it_from_the_resumed_weights(
    tmp_path: Path, small_config: Path
) -> None:
    common = ["--config", small_config, "--batch-size", "64", "--workers", "0"]
    common += ["--cache-dir", tmp_path / "cache"]
    full, late = tmp_path / "full", tmp_path / "late"
    ema = ["--ema-decay", "0.9"]

    def train(*args: object) -> None:
        result = run("train", *FILES, "--out", *args, *common)
        assert result.exit_code == 0, result.output

    train(full, "--epochs", "2", *ema)
    train(late, "--epochs", "1")
    first, info = _checkpoint(late)
    assert not any(k.startswith("average.") for k in first) and info["average_updates"] is None
    train(late, "--epochs", "2", "--resume", *ema)
    a, _ = _checkpoint(full)
    second, info2 = _checkpoint(late)
    assert info2["average_updates"] == info2["global_step"] - info["global_step"] > 0
    for k in (k for k in a if k.startswith("model.")):  # the same trained weights as `full`
        np.testing.assert_array_equal(second[k], a[k], err_msg=k)
    assert any(not np.array_equal(second[k], a[k]) for k in a if k.startswith("average."))


def test_training_validates_and_saves_the_average(tmp_path: Path, small_config: Path) -> None:
    """The logged validation loss is that of the averaged weights, which the checkpoint holds
    beside the trained ones and which the best model is."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--config", small_config, "--batch-size", "64", "--workers", "0"]
    args = ["--out", out, "--ema-decay", "0.9", "--epochs", "1", "--cache-dir", cache]
    result = run("train", *FILES, *args, *common)
    assert result.exit_code == 0, result.output
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


def test_edited_dataset_cache_is_rebuilt_or_refused(tmp_path: Path) -> None:
    settings, cache = ProjectionSettings(), tmp_path / "cache"
    paths = [str(FILES[0])]
    build_dataset(paths, cache, settings, workers=0)
    manifest_path = cache / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"n_residues": 1}))
    with pytest.raises(InputError, match="manifest.json: metadata_sha256 does not match"):
        load_dataset(cache)
    data, _ = build_dataset(paths, cache, settings, workers=0)  # rebuilt, not trusted
    assert len(data) == manifest["n_residues"]
    assert json.loads(manifest_path.read_text()) == manifest
    index = cache / "index.parquet"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(InputError, match="index.parquet: sha256 does not match"):
        load_dataset(cache)


def test_resealed_dataset_manifest_is_still_checked(tmp_path: Path) -> None:
    """A manifest edited and sealed anew (the seal is a checksum, not a secret) still cannot
    name other shard files or send the index's rows past the shards."""
    settings, cache = ProjectionSettings(), tmp_path / "cache"
    build_dataset([str(FILES[0])], cache, settings, workers=0)
    manifest_path = cache / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for n_shards, message in [
        ("../elsewhere", "n_shards '../elsewhere' is not a shard count"),
        (-1, "n_shards -1 is not a shard count"),
        (0, "index.parquet: points to rows the shards do not hold"),
        (2, "shard-00001.npy: cannot read the shard"),
    ]:
        manifest_path.write_text(json.dumps(seal(manifest | {"n_shards": n_shards})))
        with pytest.raises(InputError, match=message):
            load_dataset(cache)
    manifest_path.write_text(json.dumps(seal(manifest)))
    assert len(load_dataset(cache)) == manifest["n_residues"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs 0"),
        (["--split", "0.5,0.5"], "three fractions"),
        (["--device", "cuda:7"], "cuda"),
        (["--degree-weights", "1,1"], "--degree-weights: degree weights [1.0, 1.0]: need 7"),
        (["--degree-weights", "1,x"], "comma-separated numbers"),
        (["--ema-decay", "1"], "--ema-decay: decay 1.0: need 0 < decay < 1"),
        (["--ema-decay", "0"], "--ema-decay: decay 0.0: need 0 < decay < 1"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, small_config: Path, args, message
) -> None:
    result = run("train", FILES[0], "--out", tmp_path / "r", "--config", small_config, *args)
    assert result.exit_code == 1 and message in result.output.lower()
    assert "Traceback" not in result.output


def test_too_few_structures_and_bad_config(tmp_path: Path, small_config: Path) -> None:
    result = run(
        "train", FILES[0], "--out", tmp_path / "a", "--config", small_config, "--workers", "0"
    )
    assert result.exit_code == 1 and "structure group" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SMALL, "lmax_list": [6, 6, 6, 4, 2, 0]}))
    result = run("train", *FILES, "--out", tmp_path / "b", "--config", bad, "--workers", "0")
    assert result.exit_code == 1 and "does not fit" in result.output
    bad.write_text(json.dumps({"n_layers": 3}))
    result = run("train", *FILES, "--out", tmp_path / "c", "--config", bad, "--workers", "0")
    assert result.exit_code == 1 and "unknown config keys" in result.output
    (tmp_path / "empty").mkdir()
    result = run("train", tmp_path / "empty", "--out", tmp_path / "d")
    assert result.exit_code == 1 and "empty" in result.output
    twin = tmp_path / "other" / Path(FILES[0]).name  # same stem: one structure_id, one group
    twin.parent.mkdir()
    twin.write_bytes(Path(FILES[0]).read_bytes())
    result = run("train", *FILES, twin, "--out", tmp_path / "e", "--workers", "0")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert str(FILES[0]) in lines[0] and str(twin) in lines[0] and "structure_id" in lines[0]
    assert not (tmp_path / "e").exists()


def test_init_continues_from_trained_weights(tmp_path: Path, small_config: Path) -> None:
    common = ["--batch-size", "128", "--workers", "0", "--cache-dir", tmp_path / "cache"]
    first = tmp_path / "first"
    a = run("train", *FILES, "--out", first, "--config", small_config, "--epochs", "1", *common)
    assert a.exit_code == 0, a.output
    # with a vanishing learning rate the continued model stays where it started
    second = tmp_path / "second"
    args = ["--init", first / "model.safetensors", "--epochs", "1", "--lr", "1e-12", *common]
    b = run("train", *FILES, "--out", second, *args)
    assert b.exit_code == 0, b.output
    start, _ = load_model_file(first / "model")
    continued, meta = load_model_file(second / "model")
    assert continued.config == start.config
    assert meta["initialised_from"].endswith("model.safetensors")
    start_sha = json.loads((first / "model.json").read_text())["sha256"]
    assert meta["initialised_from_sha256"] == start_sha
    for (name, p), q in zip(start.named_parameters(), continued.parameters(), strict=True):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), atol=1e-6, err_msg=name)
    # a resumed run still names the weights it started from
    args[args.index("--epochs") + 1] = "2"
    c = run("train", *FILES, "--out", second, *args[2:], "--resume", "--config", small_config)
    assert c.exit_code == 0, c.output
    _, resumed = load_model_file(second / "model")
    assert json.loads((second / "checkpoint.json").read_text())["epoch"] == 2
    assert resumed["initialised_from"] == meta["initialised_from"]
    assert resumed["initialised_from_sha256"] == start_sha
    bad = run("train", *FILES, "--out", tmp_path / "x", *args, "--config", small_config)
    assert bad.exit_code == 1 and "--init" in bad.output


def test_cosine_schedule_over_a_time_budget() -> None:
    s = TrainSettings(lr=1e-3, lr_final=1e-5, lr_schedule="cosine", max_seconds=100.0)

    def cosine(t: float) -> float:
        return 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * t))

    assert s.learning_rate(0, False, 0, 1000, seconds=0.0) == pytest.approx(1e-3)
    assert s.learning_rate(0, False, 100, 1000, seconds=50.0) == pytest.approx(cosine(0.5))
    # the larger fraction wins: steps when they run ahead of the clock
    assert s.learning_rate(0, False, 800, 1000, seconds=50.0) == pytest.approx(cosine(0.8))
    assert s.learning_rate(0, False, 10, 1000, seconds=250.0) == pytest.approx(1e-5)
    # without a budget the clock is ignored
    plain = TrainSettings(lr=1e-3, lr_final=1e-5, lr_schedule="cosine")
    assert plain.learning_rate(0, False, 100, 1000, seconds=1e9) == pytest.approx(cosine(0.1))


def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every clock reading advances by one second: a deterministic 'wall clock'."""
    ticks = iter(range(10**9))
    monkeypatch.setattr("holoprot.training.trainer._clock", lambda: float(next(ticks)))


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_time_budget_stops_the_run_and_resumes_from_its_elapsed_time(
    tmp_path: Path, small_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_clock(monkeypatch)
    out = tmp_path / "run"
    common = [
        "--config", small_config, "--batch-size", "128", "--workers", "0", "--epochs", "50",
        "--lr-schedule", "cosine", "--lr-final", "1e-5", "--cache-dir", tmp_path / "cache",
    ]  # fmt: skip
    a = run("train", *FILES, "--out", out, "--max-seconds", "20", *common)
    assert a.exit_code == 0, a.output
    first = _records(out)
    steps_per_epoch = 1 + max(r["step"] for r in first if r["epoch"] == 0)
    assert first[-1]["elapsed_s"] >= 20 > first[-2]["elapsed_s"]
    assert len(first) < 50 * steps_per_epoch and "val_loss" in first[-1]
    assert (out / "model.safetensors").is_file()
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    assert checkpoint["global_step"] == first[-1]["step"]
    assert checkpoint["elapsed_s"] == first[-1]["elapsed_s"]
    settings = TrainSettings(lr_final=1e-5, lr_schedule="cosine", max_seconds=20.0)
    total = 50 * steps_per_epoch
    previous = [0.0] + [r["elapsed_s"] for r in first[:-1]]
    for r, seconds in zip(first, previous, strict=True):
        assert r["lr"] == pytest.approx(
            settings.learning_rate(0, False, r["step"] - 1, total, seconds)
        )
    # resuming with a larger budget continues from the saved elapsed time
    b = run("train", *FILES, "--out", out, "--max-seconds", "40", "--resume", *common)
    assert b.exit_code == 0, b.output
    both = _records(out)
    assert both[: len(first)] == first
    resumed = both[len(first)]
    longer = TrainSettings(lr_final=1e-5, lr_schedule="cosine", max_seconds=40.0)
    expected = longer.learning_rate(0, False, first[-1]["step"], total, first[-1]["elapsed_s"])
    assert resumed["lr"] == pytest.approx(expected)
    assert resumed["elapsed_s"] > first[-1]["elapsed_s"]
    assert both[-1]["elapsed_s"] >= 40 > both[-2]["elapsed_s"]
    bad = run("train", *FILES, "--out", tmp_path / "bad", "--max-seconds", "0", *common)
    assert bad.exit_code == 1 and "--max-seconds" in bad.output


def test_short_run_arms_set_the_schedule_and_the_degree_weights() -> None:
    """weights/short_runs.py: an arm is SCHEDULE[/W0,…][@DECAY]; anything else exits."""
    spec = importlib.util.spec_from_file_location(
        "short_runs", Path(__file__).parents[1] / "weights" / "short_runs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_arm("constant:1e-3") == {
        "degree_weights": None, "ema_decay": None, "lr_schedule": "constant", "lr": 1e-3,
    }  # fmt: skip
    arm = module.parse_arm("cosine:3e-4:1e-5/10,1,1,1,1,1,1")
    assert arm == {
        "degree_weights": (10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), "ema_decay": None,
        "lr_schedule": "cosine", "lr": 3e-4, "lr_final": 1e-5,
    }  # fmt: skip
    TrainSettings(**arm)
    assert module.parse_arm("constant:3e-4@0.99")["ema_decay"] == 0.99
    assert module.parse_arm("cosine:3e-4:1e-5/1,1,1,1,1,1,1@0.9")["ema_decay"] == 0.9
    for bad in ("cosine:3e-4", "linear:1e-3", "constant:x", "constant:1e-3/1,a", "constant:1@x"):
        with pytest.raises(SystemExit, match="expected constant:LR"):
            module.parse_arm(bad)


@pytest.mark.parametrize(("name", "parameters"), [("hae-z128", 2_622_591), ("hae-z256", 4_498_703)])
def test_config_presets_are_the_reference_architectures(name: str, parameters: int) -> None:
    """`--config hae-z256` names the reference's z = 256 H-AE (SPEC §4.4, 'efficient' rule:
    4,498,703 parameters) and hae-z128 the default (2,622,591), built here on the meta device."""
    from holoprot.training.run import read_config_file

    model_fields, settings = read_config_file(name)
    model = HVAE(HVAEConfig(**model_fields), device="meta")
    assert settings == {} and sum(p.numel() for p in model.parameters()) == parameters
