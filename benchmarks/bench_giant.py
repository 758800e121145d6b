"""Memory and throughput inside one giant structure file (issue #30).

Usage:
    python benchmarks/bench_giant.py [--source FILE] [--copies 20,60,235] [--commands embed,zernike]
        [--chunk-residues default,1024,4096] [--parse] [--corpus-files 60] [--gap 60]
        [--weights default | --tiny-weights] [--pythonpath DIR] [--keep DIR]

Giant inputs are made from one structure (default the largest BM5 file, 4GAM_r_u.pdb: 2,128
residues, 17,307 atoms) as translated copies on a cubic grid, the bounding boxes of neighbouring
copies `--gap` Å apart (60 Å: no atom of one copy is within 10 Å of another, so every copy has
the neighbourhoods of the source), each copy its own chain: one PDB file up to 62 copies (chain
ids A-Z, a-z, 0-9; atom serial numbers wrap past 99,999), mmCIF beyond (chain ids ``C1``, ``C2``,
...). 20 / 60 / 235 copies of 4GAM are 42,560 / 127,680 / 500,080 residues.

For each file and command, ``holoprot embed FILE -o out.parquet`` (CPU) and ``holoprot zernike
FILE -o out.parquet`` run as fresh processes (``python -m holoprot``); wall seconds (start-up
included), CPU seconds and peak RSS come from ``wait4`` on the child, residues/s is rows written
over wall seconds. ``--chunk-residues`` passes the hidden option of that name (``default``: none).
``--parse`` also runs `holoprot.io.structure.read_structure` alone on each file in a fresh process
(seconds, peak RSS), and on the same copies written as mmCIF, to tell the parse's share apart.
``--corpus-files N`` adds the same commands on the first N BM5 ``*_u.pdb`` files (the 60-file
throughput benchmark of bench_ray.py), to check chunking costs nothing there.

``--pythonpath DIR`` runs another checkout (e.g. a worktree of the commit before issue #30, whose
commands have no ``--chunk-residues``: leave it ``default``) for a side-by-side baseline. Nothing
is asserted; rows are Markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_CORPUS, REPO, cpu_model, row  # noqa: E402

DEFAULT_SOURCE = DEFAULT_CORPUS / "4GAM_r_u.pdb"
FALLBACK_SOURCE = REPO / "examples" / "structures" / "1hvr.pdb"
PDB_CHAINS = string.ascii_uppercase + string.ascii_lowercase + string.digits
CIF_COLUMNS = ("group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id",
               "label_comp_id", "label_asym_id", "label_seq_id", "pdbx_PDB_ins_code", "Cartn_x",
               "Cartn_y", "Cartn_z", "occupancy", "B_iso_or_equiv", "auth_seq_id",
               "auth_asym_id", "pdbx_PDB_model_num")  # fmt: skip


def _atom_lines(source: Path) -> list[str]:
    text = source.read_text()
    return [line for line in text.splitlines() if line.startswith(("ATOM", "HETATM"))]


def _grid_shifts(coords: np.ndarray, copies: int, gap: float) -> np.ndarray:
    """(copies, 3) translations: a cubic grid, neighbouring bounding boxes `gap` Å apart."""
    pitch = float(np.ptp(coords, axis=0).max()) + gap
    side = int(np.ceil(copies ** (1 / 3)))
    cells = list(itertools.product(range(side), repeat=3))[:copies]
    return np.asarray(cells, dtype=np.float64) * pitch


def write_giant(source: Path, copies: int, gap: float, out: Path, fmt: str) -> int:
    """Write `copies` translated copies of `source` (a PDB file) as one PDB or mmCIF file;
    returns the residues (with a Cα) of the whole file."""
    lines = _atom_lines(source)
    coords = np.array([[float(x[30:38]), float(x[38:46]), float(x[46:54])] for x in lines])
    shifts = _grid_shifts(coords, copies, gap)
    with out.open("w") as f:
        if fmt == "pdb":
            if copies > len(PDB_CHAINS):
                raise SystemExit(f"PDB holds at most {len(PDB_CHAINS)} chains: use mmCIF")
            serial = 0
            for k, shift in enumerate(shifts):
                for line, xyz in zip(lines, coords + shift, strict=True):
                    serial = serial % 99999 + 1
                    f.write(
                        f"{line[:6]}{serial:5d}{line[11:21]}{PDB_CHAINS[k]}{line[22:30]}"
                        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{line[54:]}\n"
                    )
                f.write("TER\n")
            f.write("END\n")
        else:
            f.write("data_giant\nloop_\n")
            f.writelines(f"_atom_site.{name}\n" for name in CIF_COLUMNS)
            fields = []
            for x in lines:
                element = x[76:78].strip() or x[12:14].strip()
                alt = x[16].strip() or "."
                icode = x[26].strip() or "?"
                seq = x[22:26].strip()
                fields.append(
                    (f"{x[:6].strip()} ", f" {element} {x[12:16].strip()} {alt} {x[17:20].strip()}",
                     f" {seq} {icode} ", f" {x[54:60].strip()} {x[60:66].strip()} {seq}")
                )  # fmt: skip
            serial = 0
            for k, shift in enumerate(shifts):
                chain = f"C{k + 1}"
                for (group, atom, seq, tail), xyz in zip(fields, coords + shift, strict=True):
                    serial += 1
                    f.write(
                        f"{group}{serial}{atom} {chain}{seq}{xyz[0]:.3f} {xyz[1]:.3f}"
                        f" {xyz[2]:.3f}{tail} {chain} 1\n"
                    )
            f.write("#\n")
    n_ca = sum(1 for x in lines if x[12:16] == " CA " and x.startswith("ATOM"))
    return n_ca * copies


def run(argv: list[str], pythonpath: Path) -> dict:
    """Run `python ARGV` in a fresh process with PYTHONPATH=`pythonpath`: wall and CPU seconds,
    peak RSS (MB) of the child, from wait4, and its stderr.

    Linux folds the spawning process's peak RSS into the child's (the child starts in the
    parent's memory until it execs), so this script keeps itself small: no torch, no pyarrow.
    """
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    start = time.perf_counter()
    proc = subprocess.Popen(  # cwd elsewhere: `-m` would import the package in the cwd first
        [sys.executable, *argv],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "rss": usage.ru_maxrss / 1024, "stderr": err}


def _rows(stderr: str) -> int:
    """The rows the command's summary line says the output holds."""
    return int(re.findall(r"holds\s+([\d,]+)\s+rows", stderr)[-1].replace(",", ""))


PARSE = (
    "import sys; from holoprot.io.structure import read_structure;"
    " s = read_structure(sys.argv[1]); print(s.n_atoms)"
)
#: A small random model, written to argv[1] (smoke runs only: not the shipped model's figures).
TINY_WEIGHTS = """
import sys, torch
from pathlib import Path
from holoprot.model import HVAE, HVAEConfig, save_model
torch.manual_seed(0)
config = HVAEConfig(latent_dim=16, ch_initial=8, ch_sizes=(8, 8, 8, 8, 16, 16),
                    input_norm_const=0.33)
meta = {"basis": {"lmax": 6, "nmax": 20, "rcut": 10.0}, "radius": 10.0}
save_model(HVAE(config).eval(), Path(sys.argv[1]).with_suffix(""), meta)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--copies", default="20,60,235")
    parser.add_argument("--commands", default="embed,zernike")
    parser.add_argument("--chunk-residues", default="default")
    parser.add_argument("--gap", type=float, default=60.0)
    parser.add_argument("--parse", action="store_true")
    parser.add_argument("--corpus-files", type=int, default=0)
    parser.add_argument("--weights", default="default")
    parser.add_argument("--tiny-weights", action="store_true")
    parser.add_argument("--pythonpath", type=Path, default=REPO)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the generated files")
    args = parser.parse_args()
    source = args.source or (DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else FALLBACK_SOURCE)
    chunks = args.chunk_residues.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="holoprot-bench-giant-"))
    folder = args.keep or tmp
    folder.mkdir(parents=True, exist_ok=True)
    weights = args.weights
    if args.tiny_weights:
        weights = str(tmp / "tiny.safetensors")
        run(["-c", TINY_WEIGHTS, weights], args.pythonpath)
    print(
        f"{cpu_model()}, {os.cpu_count()} CPUs, {time.strftime('%F %T')}, code {args.pythonpath},"
        f" source {source.name}" + (" (TINY RANDOM MODEL)" if args.tiny_weights else "")
    )
    try:
        inputs: list[tuple[str, list[str], int]] = []
        for copies in (int(c) for c in args.copies.split(",") if c):
            fmt = "pdb" if copies <= len(PDB_CHAINS) else "cif"
            path = folder / f"giant-{copies}.{fmt}"
            start = time.perf_counter()
            residues = write_giant(source, copies, args.gap, path, fmt)
            made = time.perf_counter() - start
            print(
                f"made {path.name}: {copies} copies, {residues:,} residues,"
                f" {path.stat().st_size / 1e6:,.0f} MB in {made:.0f} s",
                flush=True,
            )
            inputs.append((f"{copies} copies, {residues:,} residues, {fmt}", [str(path)], copies))
        if args.corpus_files:
            files = sorted(str(p) for p in DEFAULT_CORPUS.glob("*_u.pdb"))[: args.corpus_files]
            listing = tmp / "corpus.txt"
            listing.write_text("\n".join(files) + "\n")
            inputs.append((f"{len(files)} BM5 *_u.pdb files", [f"@{listing}"], 0))

        print("| command | input | chunk residues | wall s | CPU s | residues/s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        if args.parse:
            for label, paths, copies in inputs:
                if not copies:
                    continue
                forms = [(label, paths[0])]
                if paths[0].endswith(".pdb"):
                    cif = folder / f"giant-{copies}.cif"
                    write_giant(source, copies, args.gap, cif, "cif")
                    forms.append((label.replace("pdb", "same as mmCIF"), str(cif)))
                for what, path in forms:
                    r = run(["-c", PARSE, path], args.pythonpath)
                    print(row("read_structure", what, "-", f"{r['wall']:.1f}", f"{r['cpu']:.1f}",
                              "-", f"{r['rss']:,.0f}"), flush=True)  # fmt: skip
        for label, paths, _ in inputs:
            for command in args.commands.split(","):
                for chunk in chunks:
                    out = tmp / f"{command}.parquet"
                    argv = ["-m", "holoprot", command, *paths, "-o", str(out), "--overwrite"]
                    if command == "embed":
                        argv += ["--weights", weights, "--device", "cpu"]
                    if chunk != "default":
                        argv += ["--chunk-residues", chunk]
                    r = run(argv, args.pythonpath)
                    rate = _rows(r["stderr"]) / r["wall"]
                    out.unlink()
                    print(row(command, label, chunk, f"{r['wall']:.1f}", f"{r['cpu']:.1f}",
                              f"{rate:,.0f}", f"{r['rss']:,.0f}"), flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
