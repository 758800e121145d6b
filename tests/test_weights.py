"""The shipped default weights: they load, their config is the stored one, and the model card's
metrics are recorded in their JSON and reproducible (the public-slice probe is recomputed).

The weights ship as package data (``holoprot/weights_data/``); the model card and loss curve stay
in the top-level ``weights/`` folder. Skipped while the default weights are not in the checkout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from holoprot.embedding.embedder import Embedder, load_model
from holoprot.evaluation import SLICE_TEST, SLICE_TRAIN, STANDARD_AMINO_ACIDS, slice_probe
from holoprot.model import HVAEConfig
from holoprot.model.weights import (
    DEFAULT_WEIGHTS,
    PACKAGE_WEIGHTS,
    list_weights,
    model_files,
    resolve_weights,
)
from holoprot.zernike.basis import ZernikeBasis

CARD_DIR = Path(__file__).parents[1] / "weights"

pytestmark = pytest.mark.skipif(
    not (PACKAGE_WEIGHTS / f"{DEFAULT_WEIGHTS}.safetensors").is_file(),
    reason=f"{DEFAULT_WEIGHTS}.safetensors is not shipped in this checkout yet",
)


@pytest.fixture(scope="module")
def info() -> dict:
    return json.loads(model_files(resolve_weights("default"))[1].read_text())


@pytest.fixture(scope="module")
def evaluation(info: dict) -> dict:
    assert "evaluation" in info["metadata"], "run weights/evaluate.py --write"
    return info["metadata"]["evaluation"]


def test_default_weights_load_and_config_matches(info: dict) -> None:
    assert resolve_weights("default") == PACKAGE_WEIGHTS / DEFAULT_WEIGHTS
    model, loaded = load_model("default", device="cpu")  # checks the sha256
    assert loaded["sha256"] == info["sha256"]
    assert model.config == HVAEConfig.from_dict(info["config"])
    assert model.config.to_dict() == info["config"]
    assert model.config.latent_dim == 128 and not model.config.is_vae
    assert model.config.irreps_in == ZernikeBasis().irreps
    assert Embedder("default", device="cpu").latent_dim == 128
    meta = info["metadata"]
    for key in ("training_data", "samples_seen", "wall_time_s", "hardware", "epoch"):
        assert key in meta, key


def _readme_figure(pattern: str) -> float:
    """A figure the README's status paragraph states for the shipped weights."""
    match = re.search(pattern, (CARD_DIR.parent / "README.md").read_text())
    assert match, f"README states no {pattern!r}"
    return float(match.group(1))


def test_model_card_metrics_are_recorded(info: dict, evaluation: dict) -> None:
    assert evaluation["sha256"] == info["sha256"]  # measured on these very weights
    assert evaluation["split"] == "test"
    rec = evaluation["reconstruction"]
    assert rec["n"] >= 10_000
    assert sorted(rec["per_l"], key=int) == [str(l) for l in range(7)]
    # The figures the README states are the recorded ones, at the precision it states them.
    loss = _readme_figure(r"weighted cosine loss (0\.\d{4})")
    assert round(rec["weighted_cosine_loss"], 4) == loss
    assert loss < 0.25 and 0 < rec["r2"] < 1 and rec["overall"] > 0.8
    # Invariance of float32 embeddings under rotation: rounding (~1e-6), far below 1e-4.
    inv = evaluation["invariance"]
    assert inv["dtype"] == "float32" and len(inv["structures"]) >= 2
    assert 0 < inv["mean"] <= inv["max"] <= 1e-4 and 0 < inv["frame_error_max"] <= 1e-4
    probe = evaluation["probe"]
    assert probe["n_train"] > 0 and probe["n_test"] > 0
    assert set(probe["per_class"]) <= set(STANDARD_AMINO_ACIDS)
    png = CARD_DIR / evaluation["loss_curve"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = CARD_DIR / "README.md"
    assert card.is_file() and DEFAULT_WEIGHTS in card.read_text()


def test_recorded_slice_probe_is_reproduced(evaluation: dict) -> None:
    recorded = evaluation["slice"]
    assert recorded["train_files"] == list(SLICE_TRAIN)
    assert recorded["test_files"] == list(SLICE_TEST)
    now = slice_probe(Embedder("default", device="cpu"), seed=evaluation["seed"])
    assert (now["n_train"], now["n_test"]) == (recorded["n_train"], recorded["n_test"])
    # Same seed and data: identical up to float rounding in BLAS across CPUs, which may flip a
    # borderline prediction or two out of ~950 test residues (0.2 % each).
    assert now["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)


def test_list_weights_names_the_default(info: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOLOPROT_WEIGHTS_PATH", raising=False)
    (default,) = [w for w in list_weights() if w.name == DEFAULT_WEIGHTS]
    assert default.sha256 == info["sha256"] and len(default.sha256) == 64
    assert default.latent_dim == info["config"]["latent_dim"] == 128
    assert default.path == PACKAGE_WEIGHTS / DEFAULT_WEIGHTS


def test_recorded_probes_and_baselines(evaluation: dict) -> None:
    """The figures of the current weights/evaluate.py: reconstruction per subset, the probes
    (secondary structure 3/8 states, residue type) with their baselines, in the order the model
    card describes: the latent knows secondary structure better than the input's l = 0
    coefficients, and the centre residue's type far worse; every feature beats the majority."""
    assert "probes" in evaluation, (
        "recorded by an older weights/evaluate.py: re-run it with --write"
    )
    rec = evaluation["reconstruction"]
    assert 0 <= rec["weighted_cosine_loss"] <= 2 and rec["mse"] > 0 and rec["r2"] <= 1
    assert sorted(rec["per_l_r2"], key=int) == [str(l) for l in range(7)]
    assert evaluation["dssp"]["program"].startswith("mkdssp version 4")
    assert evaluation["rows"]["probe_train"] >= 50_000
    accuracy = {
        task: {k: f["accuracy"]["all"] for k, f in evaluation["probes"][task]["features"].items()}
        for task in ("ss3", "ss8", "residue_type")
    }
    assert round(accuracy["ss3"]["latent"], 3) == _readme_figure(
        r"secondary-structure probe of (0\.\d{3})"
    )
    for task in ("ss3", "ss8"):
        a = accuracy[task]
        assert a["latent"] > a["input_l0"] > a["majority_class"], (task, a)
        assert a["latent"] > a["latent_random_init"], (task, a)
    a = accuracy["residue_type"]
    assert a["input_l0"] > a["latent"] > a["majority_class"], a
