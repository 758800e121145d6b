from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from holoprot._util.hashing import SEAL_KEY, seal
from holoprot.embedding.embedder import load_model
from holoprot.errors import HoloprotError
from holoprot.model import HVAE, HVAEConfig, load_model_file, save_model
from holoprot.model.description import load_state_arrays, read_model_files
from holoprot.model.weights import list_weights, resolve_weights

CONFIG = HVAEConfig(
    irreps_in="4x0e+3x1e+2x2e",
    latent_dim=4,
    ch_initial=3,
    ch_sizes=(3, 4),
    lmax_list=(2, 1),
    is_vae=True,
    input_norm_const=0.33,
)


def saved(tmp_path: Path) -> tuple[HVAE, Path]:
    torch.manual_seed(0)
    model = HVAE(CONFIG)
    with torch.no_grad():
        model.train()(torch.randn(8, CONFIG.dim))  # non-trivial running statistics
    model.eval()
    return model, save_model(model, tmp_path / "m", {"epoch": 3})


def test_save_replaces_links_planted_at_temporary_names(tmp_path: Path) -> None:
    """Earlier versions wrote under ``.m.safetensors.<pid>.tmp`` and ``.m.json.<pid>.tmp``: a
    link planted there (pointing outside the folder) must not be written through (issue #28)."""
    folder, victims = tmp_path / "out", tmp_path / "victims"
    folder.mkdir()
    victims.mkdir()
    for name in (f".m.safetensors.{os.getpid()}.tmp", f".m.json.{os.getpid()}.tmp"):
        (victims / name).write_bytes(b"precious")
        (folder / name).symlink_to(victims / name)
    model, path = saved(folder)
    assert [v.read_bytes() for v in victims.iterdir()] == [b"precious", b"precious"]
    assert not path.is_symlink() and not (folder / "m.json").is_symlink()
    assert load_model_file(path)[1] == {"epoch": 3}
    assert len(list(folder.iterdir())) == 4  # the two links, untouched, and the model


def test_round_trip(tmp_path: Path) -> None:
    model, path = saved(tmp_path)
    assert path == tmp_path / "m.safetensors" and (tmp_path / "m.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    x = torch.randn(5, CONFIG.dim)
    for arg in (path, tmp_path / "m.json", tmp_path / "m", str(path)):
        loaded, meta = load_model_file(arg)
        assert meta == {"epoch": 3} and loaded.config == CONFIG and not loaded.training
        with torch.no_grad():
            a, b = model(x), loaded(x)
        for u, v in zip(a, b, strict=True):
            assert torch.equal(u, v)
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["config"] == CONFIG.to_dict() and len(info["sha256"]) == 64


def test_a_stem_with_a_dot_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`v1.2` is saved, found and loaded as v1.2.safetensors + v1.2.json, never v1.*."""
    torch.manual_seed(0)
    path = save_model(HVAE(CONFIG).eval(), tmp_path / "v1.2", {"epoch": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.2.json", "v1.2.safetensors"]
    sha = json.loads((tmp_path / "v1.2.json").read_text())["sha256"]
    for arg in (path, tmp_path / "v1.2.json", str(path)):
        assert resolve_weights(arg) == tmp_path / "v1.2"
        assert load_model(arg, device="cpu")[1]["sha256"] == sha
    monkeypatch.setenv("HOLOPROT_WEIGHTS_PATH", str(tmp_path))
    assert resolve_weights("v1.2") == tmp_path / "v1.2"
    (found,) = [w for w in list_weights() if w.name == "v1.2"]
    assert (found.sha256, found.latent_dim, found.path) == (sha, 4, tmp_path / "v1.2")
    _, info = load_model("v1.2", device="cpu")
    assert (info["name"], info["sha256"], info["metadata"]) == ("v1.2", sha, {"epoch": 1})


def test_tampered_weights_are_rejected(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(HoloprotError, match="sha256"):
        load_model_file(path)


def test_config_not_matching_tensors_is_rejected(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    sidecar = tmp_path / "m.json"
    info = json.loads(sidecar.read_text())
    info["config"]["latent_dim"] = 5
    sidecar.write_text(json.dumps(seal(info)))  # resealed: the shape check behind the seal
    with pytest.raises(HoloprotError, match="shape") as exc:
        load_model_file(path)
    assert "\n" not in str(exc.value)
    info["config"]["is_vae"] = False
    info["config"]["latent_dim"] = 4
    sidecar.write_text(json.dumps(seal(info)))
    with pytest.raises(HoloprotError, match="do not match the config"):
        load_model_file(path)


def _resealed(sidecar: Path, weights: Path) -> None:
    """Make the description vouch for the weights file as it is now (an attacker who can write
    both files can do this; the checks behind the seal still apply)."""
    info = json.loads(sidecar.read_text())
    info["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(seal(info)))


def test_oversized_or_malformed_weights_are_refused_before_parsing(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    sidecar, original = tmp_path / "m.json", path.read_bytes()
    path.write_bytes(original + bytes(2 << 20))  # more than the config's tensors and a header
    _resealed(sidecar, path)
    with pytest.raises(HoloprotError, match="more than the tensors of its config take"):
        load_model_file(path)
    path.write_bytes((1 << 40).to_bytes(8, "little") + original[8:])  # header length lies
    _resealed(sidecar, path)
    with pytest.raises(HoloprotError, match="unreadable safetensors file"):
        load_model_file(path)


def test_tensors_come_from_the_bytes_that_were_checked(tmp_path: Path) -> None:
    """A weights file replaced after the checks is not what gets loaded."""
    model, path = saved(tmp_path)
    files = read_model_files(path)
    path.write_bytes(bytes(len(files.data)))
    state = load_state_arrays(files)
    for name, tensor in model.state_dict().items():
        assert np.array_equal(state[name], tensor.numpy()), name


def test_bad_sidecar_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(HoloprotError, match="not found"):
        load_model_file(tmp_path / "nothing.safetensors")
    _, path = saved(tmp_path)
    sidecar = tmp_path / "m.json"
    info = json.loads(sidecar.read_text())
    info["config"]["colour"] = "red"
    sidecar.write_text(json.dumps(seal(info)))
    with pytest.raises(HoloprotError, match="unknown HVAEConfig keys"):
        load_model_file(path)


def _tampered(value: object) -> list[object]:
    """Edited versions of a JSON value (every leaf changed once, one at a time)."""
    if isinstance(value, dict):
        return [value | {k: t} for k, v in value.items() for t in _tampered(v)]
    if isinstance(value, list):
        return [[*value[:i], t, *value[i + 1 :]] for i, v in enumerate(value) for t in _tampered(v)]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [value + 1]
    if isinstance(value, str):
        return [value + "x"]
    return [0]


def test_every_edited_field_is_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    sidecar = tmp_path / "m.json"
    info = json.loads(sidecar.read_text())
    body = {k: v for k, v in info.items() if k != SEAL_KEY}
    edits = [e | {SEAL_KEY: info[SEAL_KEY]} for e in _tampered(body)]
    assert len(edits) > 10
    for edited in [*edits, body]:  # `body`: the seal removed
        sidecar.write_text(json.dumps(edited))
        with pytest.raises(HoloprotError, match="m.json") as exc:
            load_model_file(path)
        assert "\n" not in str(exc.value)
    sidecar.write_text(json.dumps(info, indent=3))  # reformatting is not an edit
    load_model_file(path)


def test_config_validation() -> None:
    assert HVAEConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ValueError, match="unknown"):
        HVAEConfig.from_dict({"latent": 3})
    for bad in (
        {"ls_rule": "sparse"},
        {"latent_dim": 0},
        {"lmax_list": (6, 6, 6, 4, 2, 0)},
        {"ch_sizes": (60, 60)},
        {"input_norm_const": -1.0},
        {"irreps_in": "4x0e+2x2e"},
    ):
        with pytest.raises(ValueError):
            HVAEConfig(**bad)


def test_saved_weights_are_as_readable_as_any_new_file(tmp_path: Path) -> None:
    """safetensors writes its files 0600 whatever the umask: save_model gives the weights the
    mode of any new file (0644 under umask 022), so a shared folder's users can load them."""
    old = os.umask(0o022)
    try:
        _, path = saved(tmp_path)
    finally:
        os.umask(old)
    for file in (path, path.with_suffix(".json")):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
