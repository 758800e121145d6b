"""The built wheel works on its own: installed (not editable) into a fresh virtual environment
outside the checkout, `holoprot embed` runs with the default weights the wheel carries.

The fresh environment reuses the test interpreter's installed dependencies through a ``.pth``
line (so nothing is downloaded, torch above all) and gets only the wheel itself, installed with
``--no-deps``; the checks make sure the `holoprot` it imports is the wheel's copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from holoprot import __version__
from holoprot.io.tables import read_metadata
from holoprot.model.weights import DEFAULT_WEIGHTS, PACKAGE_WEIGHTS

ROOT = Path(__file__).parents[1]
STRUCTURE = ROOT / "examples" / "structures" / "1hvr.pdb"

pytestmark = pytest.mark.skipif(
    not (PACKAGE_WEIGHTS / f"{DEFAULT_WEIGHTS}.safetensors").is_file(),
    reason="the default weights are not in this checkout",
)


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(bin folder of a fresh venv holding the installed wheel, environment to run it in)."""
    tmp = tmp_path_factory.mktemp("package")
    # Build from a copy of the sources so that the build leaves nothing in the checkout.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "holoprot", src / "holoprot", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HOLOPROT"))}
    wheels = tmp / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "--no-index", "-w", wheels, src], tmp, env)
    (wheel,) = wheels.glob("holoprot-*.whl")
    assert wheel.name.startswith(f"holoprot-{__version__}-")

    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp, env
        ).strip()
    )
    parent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_parent_env.pth").write_text("\n".join(sorted(parent)) + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], tmp, env)
    return env_dir / "bin", env


def test_wheel_installs_and_embeds_outside_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    work = tmp_path / "elsewhere"
    (work / "inputs").mkdir(parents=True)
    shutil.copy(STRUCTURE, work / "inputs" / STRUCTURE.name)

    where = _run([bin_dir / "python", "-c", "import holoprot; print(holoprot.__file__)"], work, env)
    assert Path(where.strip()).is_relative_to(bin_dir.parent), where
    assert _run([bin_dir / "holoprot", "--version"], work, env).strip() == f"holoprot {__version__}"
    listing = _run([bin_dir / "holoprot", "weights"], work, env)
    (line,) = [row for row in listing.splitlines() if row.startswith(DEFAULT_WEIGHTS)]
    assert str(bin_dir.parent) in line and "\t128\t" in line

    cmd = [bin_dir / "holoprot", "embed", "inputs", "-o", "out.parquet", "--device", "cpu"]
    _run(cmd, work, env)
    table = pq.read_table(work / "out.parquet")
    assert table.num_rows == 198 and table.schema.field("latent").type.list_size == 128
    meta = read_metadata(work / "out.parquet")
    assert meta["holoprot_version"] == __version__ and meta["weights_name"] == DEFAULT_WEIGHTS
