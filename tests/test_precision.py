"""bfloat16 matmuls in the encoder (``HVAE.encode(x, precision="bf16")``) and the check of whether
a device has them in hardware (``holoprot._util.devices.bf16_supported``)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from holoprot._util.devices import (
    bf16_supported,
    cpu_flags,
    cpu_has_bf16,
    parse_cpuinfo_flags,
    parse_sysctl_flags,
)
from holoprot.model.hvae import HVAE, HVAEConfig
from holoprot.model.layers import channel_mix
from holoprot.model.weights import DEFAULT_WEIGHTS, PACKAGE_WEIGHTS

INPUTS = Path(__file__).parent / "data" / "reference" / "model_small" / "inputs.npz"

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx f16c fma avx2 bmi2 avx512_fp16 avx_vnni
bogomips\t: 4899.99
"""
SAPPHIRE_RAPIDS = ZEN3.replace("avx_vnni", "avx512f avx512bw avx512_bf16 amx_tile amx_bf16")
AMX_ONLY = ZEN3.replace("avx_vnni", "amx_tile amx_bf16")
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
"""
GRAVITON2 = GRAVITON3.replace(" svebf16 i8mm bf16", "")
APPLE_M2 = "hw.optional.arm.FEAT_BF16: 1\nhw.optional.arm.FEAT_I8MM: 1\nhw.optional.arm.FEAT_SME: 0"
APPLE_M1 = "hw.optional.arm.FEAT_BF16: 0\nhw.optional.arm.FEAT_FP16: 1\n"


@pytest.mark.parametrize(
    ("text", "has_bf16"),
    [(ZEN3, False), (SAPPHIRE_RAPIDS, True), (AMX_ONLY, True), (GRAVITON3, True),
     (GRAVITON2, False), ("", False), ("processor\t: 0\n", False)],
)  # fmt: skip
def test_cpuinfo_flags(text: str, has_bf16: bool) -> None:
    """x86 `flags` and Arm `Features` lines; avx512_fp16 / avx_vnni are not bf16."""
    flags = parse_cpuinfo_flags(text)
    assert cpu_has_bf16(flags) is has_bf16
    if text:
        assert ("avx2" in flags) == ("avx2" in text) and ("asimd" in flags) == ("asimd" in text)


def test_only_the_first_processor_is_read() -> None:
    assert parse_cpuinfo_flags(ZEN3 + "\n" + SAPPHIRE_RAPIDS) == parse_cpuinfo_flags(ZEN3)


@pytest.mark.parametrize(("text", "has_bf16"), [(APPLE_M2, True), (APPLE_M1, False), ("", False)])
def test_macos_sysctl_flags(text: str, has_bf16: bool) -> None:
    flags = parse_sysctl_flags(text)
    assert cpu_has_bf16(flags) is has_bf16
    assert ("fp16" in flags) == ("FEAT_FP16: 1" in text)
    assert "sme" not in flags


def test_bf16_supported_reads_this_cpu() -> None:
    """The CPU answer is the flag check of this machine's flags; on x86 it agrees with torch's
    own (cpuinfo-based) check of AVX-512 BF16 / AMX; devices other than CPU and CUDA: False."""
    assert bf16_supported("cpu") is cpu_has_bf16(cpu_flags())
    assert bf16_supported(torch.device("cpu")) is bf16_supported("cpu")
    if platform.machine() in ("x86_64", "AMD64") and Path("/proc/cpuinfo").is_file():
        torch_says = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert bf16_supported("cpu") is torch_says
    assert bf16_supported("meta") is False
    if not torch.cuda.is_available():
        assert bf16_supported("cuda") is False


def test_channel_mix_rounds_both_operands_and_the_product() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 5, 40, generator=gen), torch.randn(40, 7, generator=gen)
    got = channel_mix(x, w, torch.bfloat16)
    assert got.dtype == torch.float32
    assert torch.equal(got, (x.bfloat16() @ w.bfloat16()).float())
    assert not torch.equal(got, x @ w)


def test_unknown_precision_is_refused() -> None:
    model = HVAE(HVAEConfig(latent_dim=4, ch_initial=3, ch_sizes=(3, 3, 4), lmax_list=(4, 2, 1)))
    with pytest.raises(ValueError, match="precision"):
        model.encode(torch.zeros(1, model.config.dim), precision="fp16")


@pytest.mark.requires(
    (PACKAGE_WEIGHTS / f"{DEFAULT_WEIGHTS}.safetensors").is_file(), "the default weights"
)
def test_bf16_latent_error_on_real_neighbourhoods() -> None:
    """Shipped z = 128 weights, the 16 real neighbourhoods of the reference fixture; errors are
    per residue, ``‖z − z_fp64‖ / ‖z_fp64‖``.

    fp32: ≤ 2e-5 (measured 5.2e-6: float32 sums of up to 720 products per matmul). bf16:
    between 1e-3 and 1e-2. bf16 keeps 8 significant bits (unit roundoff 2⁻⁹ ≈ 0.2 %); rounding
    the matmuls of the first four CG blocks moves the latents by 0.32–0.56 % here (0.42 %
    median, 0.72 % max on 10,000 held-out residues), so 1 % is 1.4 times the largest seen; the
    lower bound shows bf16 is in use. bf16 in every block would give 1.5–2.4 % here (the last
    two blocks dominate), so the upper bound also fails if they lose their fp32 matmuls.
    """
    from holoprot.embedding.embedder import load_model

    model, _ = load_model("default", "cpu")
    with np.load(INPUTS) as data:
        x = torch.from_numpy(data["x_normalised"]) * float(data["norm_const_f32"])
    with torch.no_grad():
        z64 = model.double().encode(x.double())[0]
        model.float()
        z32 = model.encode(x)[0].double()
        z16 = model.encode(x, precision="bf16")[0].double()
        assert torch.equal(model.encode(x, precision="fp32")[0].double(), z32)

    def error(z: torch.Tensor) -> torch.Tensor:
        return (z - z64).norm(dim=1) / z64.norm(dim=1)

    assert error(z32).max() <= 2e-5
    assert error(z16).min() >= 1e-3
    assert error(z16).max() <= 1e-2


def test_check_precision_refuses_unknown_names_and_emulated_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One-line refusals: a name other than fp32/bf16 anywhere; bf16 where the CPU flags show no
    bfloat16 hardware, on a CUDA device this machine lacks, and on other devices."""
    from holoprot._util import devices
    from holoprot.errors import HoloprotError

    with pytest.raises(HoloprotError, match=r"^--precision fp16: expected fp32 or bf16$"):
        devices.check_precision("fp16", "cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    devices.check_precision("fp32", "cpu")
    with pytest.raises(HoloprotError) as refused:
        devices.check_precision("bf16", "cpu")
    assert "\n" not in str(refused.value) and "no bfloat16" in str(refused.value)
    assert str(refused.value).endswith("use --precision fp32")
    if not torch.cuda.is_available():
        with pytest.raises(HoloprotError, match="cuda has no bfloat16"):
            devices.check_precision("bf16", "cuda")
    with pytest.raises(HoloprotError, match="meta has no bfloat16"):
        devices.check_precision("bf16", "meta")
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    devices.check_precision("bf16", "cpu")


@pytest.mark.requires(
    (PACKAGE_WEIGHTS / f"{DEFAULT_WEIGHTS}.safetensors").is_file(), "the default weights"
)
def test_embed_precision_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`holoprot embed --precision`: refused in one line on a CPU without bf16 (no output file);
    on one with it (flags patched; torch emulates the arithmetic here, with the same rounding),
    latents of the shipped weights within 1 % of fp32 per residue and not equal to them (bf16 in
    use), and the file's metadata says which precision made it. Tolerance: the test above (0.72 %
    max measured; random weights, whose activations are not trained to be smooth, reach 2 %)."""
    from typer.testing import CliRunner

    from holoprot._util import devices
    from holoprot.cli import app
    from holoprot.io.tables import read_metadata
    from holoprot.search.embeddings import latent_matrix

    runner = CliRunner()
    source = Path(__file__).parents[1] / "examples" / "structures" / "1hvr.pdb"
    base = ["embed", str(source), "--workers", "0"]
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2"}))
    refused = runner.invoke(app, [*base, "-o", str(tmp_path / "no.parquet"), "--precision", "bf16"])
    assert refused.exit_code != 0
    assert refused.output.strip().splitlines()[-1].endswith("use --precision fp32")
    assert "no bfloat16" in refused.output and not (tmp_path / "no.parquet").exists()

    fp32, bf16 = tmp_path / "fp32.parquet", tmp_path / "bf16.parquet"
    assert runner.invoke(app, [*base, "-o", str(fp32)]).exit_code == 0
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    done = runner.invoke(app, [*base, "-o", str(bf16), "--precision", "bf16"])
    assert done.exit_code == 0, done.output
    assert read_metadata(fp32)["precision"] == "fp32" and read_metadata(bf16)["precision"] == "bf16"
    z32, z16 = (latent_matrix(pq.read_table(p).column("latent")) for p in (fp32, bf16))
    error = np.linalg.norm(z16 - z32, axis=1) / np.linalg.norm(z32, axis=1)
    assert 0 < error.max() <= 1e-2
