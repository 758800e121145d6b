"""The torch-free CPU encoder (`holoprot.model.cpu_encoder`) computes what `HVAE.encode` does.

Tolerances (float32 both sides): against the authors' reference outputs the same 1e-4 of the
largest value as tests/test_model_reference.py; against our torch encoder 1e-5 of each residue's
latent norm and 1e-4 absolute on the unit frame rows. The two sum in different orders (the
batch norm folded into a scale and shift, other GEMM blockings); observed 2e-7 to 3e-6 on the
latents. Gram-Schmidt divides by the sine of the angle between the two learned vectors, so a
residue whose vectors are nearly parallel (random weights make some) magnifies that: observed up
to 1.02e-5 on a frame row. A wrong fold, weight row or path order moves latents and frames by 1e-2
to 1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_model_reference import SMALL, load_small

from holoprot._util.devices import cuda_may_be_present, resolve_device_name
from holoprot.errors import HoloprotError
from holoprot.model import HVAE, HVAEConfig
from holoprot.model.config import CONFIG_PRESETS, state_shapes
from holoprot.model.cpu_encoder import CPUEncoder
from holoprot.model.weights import resolve_weights

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "structures" / "1hvr.pdb"
RTOL_REFERENCE = 1e-4
RTOL_TORCH = 1e-5
ATOL_FRAME = 1e-4


def numpy_state(model: HVAE) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def torch_encode(model: HVAE, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        z, _, frame = model.eval().encode(torch.from_numpy(x))
    return z.numpy(), frame.numpy()


def assert_close(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    (z, frame), (z_ref, frame_ref) = got, want
    assert z.dtype == frame.dtype == np.float32
    latent_err = np.linalg.norm(z - z_ref, axis=1) / np.linalg.norm(z_ref, axis=1)
    assert latent_err.max() <= RTOL_TORCH, latent_err.max()
    assert np.abs(frame - frame_ref).max() <= ATOL_FRAME


@pytest.mark.parametrize("variant", ["ae", "vae", "full"])
def test_matches_the_authors_reference(variant: str) -> None:
    model = load_small(variant)
    encoder = CPUEncoder(model.config, numpy_state(model))
    inputs, ref = np.load(SMALL / "inputs.npz"), np.load(SMALL / variant / "io.npz")
    for suffix in ("", "_rotated"):
        z, frame = encoder.encode(inputs["x_normalised" + suffix])
        for name, value in (("z_mean", z), ("frame", frame)):
            want = ref[name + suffix]
            assert np.abs(value - want).max() / np.abs(want).max() <= RTOL_REFERENCE, name


@pytest.mark.parametrize("weights", ["default", "hae-z256"])
def test_equals_the_torch_encoder_on_the_shipped_weights(weights: str) -> None:
    from holoprot.embedding.embedder import Embedder, load_model
    from holoprot.io.structure import read_structure
    from holoprot.zernike.neighborhoods import extract_neighborhoods

    embedder = Embedder(weights, "cpu")
    nbh = extract_neighborhoods(read_structure(EXAMPLE), radius=embedder.radius)
    x = embedder.basis.coefficients(nbh)
    model, _ = load_model(weights, "cpu")
    got = CPUEncoder.load(resolve_weights(weights))[0].encode(x)
    assert_close(got, torch_encode(model, x))
    emb = embedder.embed_coefficients(x)  # the Embedder's CPU path is this encoder
    assert np.array_equal(emb.latent, got[0]) and np.array_equal(emb.frame, got[1])


def randomised(config: HVAEConfig, seed: int) -> HVAE:
    """A model of `config` whose every parameter and batch-norm statistic is random (a fresh
    init has unit norms and zero means, under which folding mistakes would not show)."""
    gen = torch.Generator().manual_seed(seed)
    model = HVAE(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.rand(tensor.shape, generator=gen)
            if name.endswith("running_var"):
                tensor.copy_(0.2 + noise)
            elif name.endswith(("batch_norm.weight", "signal_norm.weights")) or ".weights." in name:
                tensor.add_(0.5 * (noise - 0.5))
            else:
                tensor.copy_(noise - 0.5)
    return model


@pytest.mark.parametrize(
    "config",
    [
        HVAEConfig(**CONFIG_PRESETS["hae-z256"]),
        HVAEConfig(is_vae=True, input_norm_const=7.5),
        HVAEConfig(ls_rule="full", ch_sizes=(12, 12, 16, 16), lmax_list=(6, 4, 2, 1)),
        HVAEConfig(irreps_in="6x0e+5x1e+4x2e", ch_initial=5, ch_sizes=(7, 9), lmax_list=(2, 1)),
    ],
    ids=["z256", "vae", "full-rule", "small-lmax2"],
)
def test_equals_the_torch_encoder_on_random_weights(config: HVAEConfig) -> None:
    model = randomised(config, seed=3)
    x = np.random.default_rng(4).normal(size=(300, config.dim)).astype(np.float32)
    got = CPUEncoder(config, numpy_state(model)).encode(x)
    assert_close(got, torch_encode(model, x))


def test_state_shapes_are_the_models() -> None:
    for config in (
        HVAEConfig(),
        HVAEConfig(**CONFIG_PRESETS["hae-z256"]),
        HVAEConfig(is_vae=True, ls_rule="full", ch_sizes=(8, 8, 8, 8), lmax_list=(6, 4, 2, 1)),
    ):
        model = HVAE(config, device="meta")
        assert state_shapes(config) == {
            k: (tuple(v.shape), "F32") for k, v in model.state_dict().items()
        }


def test_refuses_a_changed_weights_file(tmp_path: Path) -> None:
    stem = resolve_weights("default")
    for suffix in (".safetensors", ".json"):
        shutil.copy(stem.with_name(stem.name + suffix), tmp_path / f"w{suffix}")
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "w.safetensors").write_bytes(bytes(data))
    with pytest.raises(HoloprotError, match="sha256 does not match"):
        CPUEncoder.load(tmp_path / "w.safetensors")


def test_rejects_inputs_of_the_wrong_width() -> None:
    encoder = CPUEncoder.load(resolve_weights("default"))[0]
    with pytest.raises(ValueError, match=r"\(B, 1708\)"):
        encoder.encode(np.zeros((3, 1707), np.float32))


def test_loads_and_encodes_without_torch() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from holoprot.embedding.embedder import Embedder
        embedder = Embedder("default", "cpu")
        z = embedder.embed_coefficients(np.ones((3, 1708), np.float32)).latent
        assert z.shape == (3, 128) and np.isfinite(z).all()
        assert "torch" not in sys.modules
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cuda_is_ruled_out_only_without_a_driver(tmp_path: Path) -> None:
    """`auto` skips torch's CUDA check only where no NVIDIA device node (or WSL's GPU bridge)
    exists; on macOS always (torch has no CUDA there), on other systems never."""
    assert not cuda_may_be_present("linux", tmp_path)
    for node in ("nvidiactl", "nvidia0", "dxg"):
        (tmp_path / node).touch()
        assert cuda_may_be_present("linux", tmp_path), node
        (tmp_path / node).unlink()
    assert not cuda_may_be_present("darwin", tmp_path)
    assert cuda_may_be_present("win32", tmp_path)
    if not cuda_may_be_present():  # then torch finds none either
        assert not torch.cuda.is_available()
        assert resolve_device_name("auto") == "cpu"
    assert resolve_device_name("cpu") == "cpu"


def test_is_part_of_the_model_api() -> None:
    """`holoprot.model` imports its names lazily; `dir()` (what the API docs read) lists them."""
    import holoprot.model

    assert holoprot.model.CPUEncoder is CPUEncoder
    assert {"CPUEncoder", "HVAE", "HVAEConfig", "load_model_file"} <= set(dir(holoprot.model))
