"""Float16-stored weights (``"tensor_dtype": "F16"``) and weights/snapshot.py, which writes them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cpu_encoder import assert_close, torch_encode

from holoprot._util.hashing import seal
from holoprot.errors import HoloprotError
from holoprot.model import HVAE, HVAEConfig, load_model_file, save_model
from holoprot.model.cpu_encoder import CPUEncoder
from holoprot.model.description import load_state_arrays, read_model_files

WEIGHTS = Path(__file__).parents[1] / "weights"
spec = importlib.util.spec_from_file_location("snapshot", WEIGHTS / "snapshot.py")
snapshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snapshot)

CONFIG = HVAEConfig(ch_initial=4, ch_sizes=(4, 4, 4, 4, 4, 4), latent_dim=8)


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(HVAE(CONFIG).eval(), tmp_path / "run" / "best", {"samples_seen": 7})


def test_float16_copy_within_rounding_and_loaded_as_float32(trained: Path, tmp_path: Path) -> None:
    copy = snapshot.float16_copy(trained, tmp_path / "ship" / "z")

    def tensor_bytes(path: Path) -> int:  # the file less its 8-byte length and JSON header
        data = path.read_bytes()
        return len(data) - 8 - int.from_bytes(data[:8], "little")

    assert 2 * tensor_bytes(copy) == tensor_bytes(trained)
    info = json.loads(copy.with_suffix(".json").read_text())
    assert info["tensor_dtype"] == "F16"
    model, meta = load_model_file(copy)
    original, _ = load_model_file(trained)
    assert (
        meta["samples_seen"] == 7
        and meta["float16_of"] == json.loads(trained.with_suffix(".json").read_text())["sha256"]
    )
    pairs = zip(original.state_dict().items(), model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert b.dtype == a.dtype == torch.float32, name
        # float16 keeps 11 significant bits: |error| <= 2^-11 |w| above its normal range
        # (6.1e-5), and at most half its subnormal step (3e-8) below
        assert torch.all((a - b).abs() <= a.abs() * 2**-11 + 3e-8), name
        assert torch.equal(b, b.half().float()), name  # the stored values, exactly
    arrays = load_state_arrays(read_model_files(copy))
    assert all(v.dtype == np.float32 for v in arrays.values())
    x = np.random.default_rng(0).normal(size=(5, 1708)).astype(np.float32)
    assert_close(CPUEncoder.load(copy)[0].encode(x), torch_encode(model, x))


def test_float16_weights_must_say_so(trained: Path, tmp_path: Path) -> None:
    copy = snapshot.float16_copy(trained, tmp_path / "z")
    sidecar = copy.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    del info["tensor_dtype"]  # edited: the seal refuses it before any dtype is compared
    sidecar.write_text(json.dumps(info))
    with pytest.raises(HoloprotError, match="metadata_sha256"):
        read_model_files(copy)
    # float32 tensors under a description that says F16 (a consistent, sealed pair of the wrong
    # kind): refused by the header check
    info = json.loads(trained.with_suffix(".json").read_text())
    info.pop("metadata_sha256")
    (tmp_path / "w.json").write_text(json.dumps(seal({**info, "tensor_dtype": "F16"})))
    (tmp_path / "w.safetensors").write_bytes(trained.read_bytes())
    with pytest.raises(HoloprotError, match=r"w\.safetensors: tensor .* is F32 .* needs F16"):
        read_model_files(tmp_path / "w")
    (tmp_path / "w.json").write_text(json.dumps(seal({**info, "tensor_dtype": "BF16"})))
    with pytest.raises(HoloprotError, match="tensor_dtype 'BF16' is none of F32, F16"):
        read_model_files(tmp_path / "w")


def test_float16_overflow_refused(tmp_path: Path) -> None:
    model = HVAE(CONFIG).eval()
    with torch.no_grad():
        next(model.parameters())[0] = 1e5  # beyond float16's 65504
    with pytest.raises(ValueError, match="not finite in F16"):
        save_model(model, tmp_path / "big", {}, tensor_dtype="F16")
    assert not list(tmp_path.iterdir())  # nothing half-written
