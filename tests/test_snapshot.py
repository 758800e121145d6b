"""weights/snapshot.py: a model in training carried between sessions as a float16 snapshot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from holoprot.errors import HoloprotError
from holoprot.model import HVAE, HVAEConfig, load_model_file, save_model

WEIGHTS = Path(__file__).parents[1] / "weights"
spec = importlib.util.spec_from_file_location("snapshot", WEIGHTS / "snapshot.py")
snapshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snapshot)


def test_pack_unpack_round_trip_within_float16_rounding(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = HVAEConfig(ch_initial=4, ch_sizes=(4, 4, 4, 4, 4, 4), latent_dim=8)
    trained = save_model(HVAE(config).eval(), tmp_path / "run" / "best", {"samples_seen": 7})
    tensors = snapshot.pack(trained, tmp_path / "snap" / "z")
    assert tensors.stat().st_size < trained.stat().st_size  # float16 (half, less the header)
    model, meta = load_model_file(snapshot.unpack(tmp_path / "snap" / "z", tmp_path / "init"))
    original, _ = load_model_file(trained)
    assert meta["samples_seen"] == 7 and model.config == original.config
    pairs = zip(original.state_dict().items(), model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert b.dtype == a.dtype == torch.float32, name
        # float16 keeps 11 significant bits: |error| <= 2^-11 |w| (above float16's normal range)
        assert torch.all((a - b).abs() <= a.abs() * 2**-11 + 6e-5), name
    sidecar = tmp_path / "snap" / "z.json"
    record = json.loads(sidecar.read_text())
    record["metadata"]["samples_seen"] = 8  # edited: the seal refuses it
    sidecar.write_text(json.dumps(record))
    with pytest.raises(HoloprotError, match="metadata_sha256"):
        snapshot.unpack(tmp_path / "snap" / "z", tmp_path / "init2")
