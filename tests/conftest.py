"""Shared fixtures: paths to the real structure files in tests/data/structures and
examples/structures/.

See tests/data/structures/PROVENANCE.md for what each file is and what it exercises.
"""

from __future__ import annotations

import os

#: `make test` runs the tests in two pytest-xdist workers (most tests wait on subprocesses, Ray
#: or Chromium part of the time): each worker's torch uses one thread, so that the two never
#: oversubscribe the cores (set before torch is imported; subprocesses inherit it).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import Result  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from holoprot.cli import app  # noqa: E402

#: CI sets HOLOPROT_STRICT=1 (`.ci/run`): a test marked ``requires`` whose data or tool is missing
#: fails there instead of being skipped, so the reference-equality and DSSP tests cannot
#: silently stop running.
STRICT = os.environ.get("HOLOPROT_STRICT") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(available, what): skip when `available` is false (fail under HOLOPROT_STRICT=1)",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (`make test`), pytest-xdist has put each grouped test's group
    in its id; a test without it would run beside the Ray tests on the other worker (where
    `ray stop --force` stops its Ray), so the run stops here instead."""
    if not getattr(config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): pytest"
            f" {pytest.__version__} with this pytest-xdist ignores xdist_group; see pyproject.toml"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        available, what = mark.args
        if available:
            continue
        if STRICT:
            pytest.fail(f"{what} is missing, and HOLOPROT_STRICT=1 requires it", pytrace=False)
        pytest.skip(f"{what} is missing")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Headless Chromium as the machine's probe runs it (no network, no first-run work), with WebGL
#: in software (SwiftShader).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--virtual-time-budget=8000",
]


@pytest.fixture
def render_page(tmp_path: Path) -> Callable[[Path], tuple[str, np.ndarray]]:
    """render_page(html_file) → (the page's <body> tag after its scripts ran, (H, W, 3) RGB
    screenshot in [0, 1] of a 1200 x 800 window), from a file:// URL in headless Chromium
    (`make chromium`; the test fails under HOLOPROT_STRICT=1 where it is missing)."""
    if CHROMIUM is None:
        if STRICT:
            pytest.fail("chromium is missing, and HOLOPROT_STRICT=1 requires it", pytrace=False)
        pytest.skip("chromium is missing (`make chromium`)")
    from matplotlib.image import imread

    def render(page: Path) -> tuple[str, np.ndarray]:
        common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
        url = Path(page).resolve().as_uri()
        dom = subprocess.run(
            [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120
        ).stdout
        start = dom.index("<body")
        png = tmp_path / "screenshot.png"
        subprocess.run(
            [*common, "--window-size=1200,800", f"--screenshot={png}", url],
            capture_output=True,
            timeout=120,
        )
        return dom[start : dom.index(">", start) + 1], imread(png)[..., :3]

    return render


TESTS_DIR = Path(__file__).parent
STRUCTURES_DIR = TESTS_DIR / "data" / "structures"
EXAMPLES_DIR = TESTS_DIR.parent / "examples" / "structures"

MMCIF = STRUCTURES_DIR / "1gbt.cif"  # mmCIF; insertion codes; Ca2+ ion, ligand GBS, SO4, waters
NMR = STRUCTURES_DIR / "1lcd_nmr.cif.gz"  # solution NMR, 3 models, gzipped mmCIF
ALTLOC = STRUCTURES_DIR / "19hc.pdb.gz"  # altlocs (one where B beats A), HEM + waters, gz PDB
MSE = STRUCTURES_DIR / "1a8o.pdb"  # selenomethionine (MSE, HETATM), waters, plain PDB
LARGE = STRUCTURES_DIR / "3kpr_unitcell.pdb.gz"  # 6,608 residues, 53,272 atoms


@pytest.fixture(scope="session")
def structures_dir() -> Path:
    return STRUCTURES_DIR


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES_DIR


@pytest.fixture(scope="session")
def mmcif_path() -> Path:
    return MMCIF


@pytest.fixture(scope="session")
def nmr_path() -> Path:
    return NMR


@pytest.fixture(scope="session")
def altloc_path() -> Path:
    return ALTLOC


@pytest.fixture(scope="session")
def mse_path() -> Path:
    return MSE


@pytest.fixture(scope="session")
def large_path() -> Path:
    return LARGE


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised H-AE saved like shipped weights (latent 16): invariance and
    equivariance hold for any weights, so behaviour tests need no trained model."""
    import torch

    from holoprot.model import HVAE, HVAEConfig, save_model

    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dim=16, ch_initial=8, ch_sizes=(8, 8, 8, 8, 16, 16), input_norm_const=0.33
    )
    stem = tmp_path_factory.mktemp("weights") / "tiny"
    meta = {"basis": {"lmax": 6, "nmax": 20, "rcut": 10.0}, "radius": 10.0}
    return save_model(HVAE(config).eval(), stem, meta)


@pytest.fixture(scope="module")
def affinity_cli() -> Callable[..., Result]:
    """Runs `holoprot train-affinity` / `predict-affinity` in process: affinity_cli(*args)."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def core_set(tmp_path: Path) -> Path:
    """A CASF-style CoreSet.dat whose core set is the one fixture complex 1hvr."""
    path = tmp_path / "CoreSet.dat"
    path.write_text("#code resl year logKa Ka target\n1hvr 1.80 1995 9.51 Ki=0.31nM 1\n")
    return path


@pytest.fixture(scope="session")
def blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """blobs(rng, n, centres, classes): n points (n, d) drawn around the (k, d) `centres` (normal,
    σ = 0.5) and their labels, `classes[i]` for centre i: linearly separable when the centres are
    far apart."""

    def draw(
        rng: np.random.Generator, n: int, centres: np.ndarray, classes: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, len(centres), n)
        x = centres[labels] + rng.normal(scale=0.5, size=(n, centres.shape[1]))
        return x, np.asarray(classes)[labels]

    return draw
