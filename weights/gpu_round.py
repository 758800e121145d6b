"""One training round on a lent GPU machine (issue #10), prepared here and run there in one command.

The GPU machine (one H200, 16 CPU cores, Python 3.12 with torch, e3nn, numba, pyarrow,
scikit-learn; no gemmi, no network) receives the working tree plus carried folders (64 MiB in
all) and gives back what the command leaves in ``$OUT`` (at most 8 files, 16 MiB each). So:

1. Here, once per corpus (from the repository root; about 20 min on 2 shared cores):

       python weights/gpu_round.py prepare data/structures-matched data/extra-structures \\
           data/pretrain-more --groups weights/training-groups.csv \\
           --pack build/gpu-pack --wheels build/gpu-wheels
       python weights/gpu_round.py check --pack build/gpu-pack --cache runs/cache-all

   ``prepare`` writes the training pack (``holoprot.training.pack``: C/N/O/S atoms at 0.001 Å,
   Cα rows, identity columns, the pinned split; 32.0 MiB for the 1,890 files, 753,759 residues,
   5.9 M atoms) and downloads the wheels the machine lacks (gemmi 2.8 MiB, cp312 manylinux) with
   ``pip download``. ``check`` projects a few structures of the pack and compares them with a
   ``holoprot train`` dataset cache (identity rows and coefficients must be equal where the
   pack's coordinates are exact, i.e. for every file with at most three decimals).

2. There, first thing when a GPU machine is lent (the device tool's ``run``)::

       command:   PYTHONUNBUFFERED=1 python3 weights/gpu_round.py run --pack build/gpu-pack
                  --wheels build/gpu-wheels --out $OUT --deadline 500
       carry:     ["build/gpu-pack", "build/gpu-wheels"]
       timeout_s: 570

   ``run`` installs the carried wheels (``pip install --no-index --no-deps --target``), puts this
   tree first on ``sys.path``, projects the whole pack on the GPU (torch backend), measures the
   encoder (batch 512 and 4096) on real coefficients, then continues training from ``--init``
   (default: the default weights, fresh Adam, as ``holoprot train --init``) on the pack's train
   split for whatever time is left before ``--deadline`` seconds after its start (less
   ``--reserve``), with the cosine schedule over that time budget and a moving average of the
   weights (``--ema-decay``, as round 7 on CPU), and finally evaluates the best (averaged) model
   on the test split. Into ``--out`` it writes: ``log.txt``, ``report.json``
   (throughput: projection neighbourhoods/s, encoder residues/s, training samples/s, GPU name,
   torch version; then the training summary), ``model.safetensors`` + ``model.json`` (the best
   validation model, replaced at every new best, so a killed run still returns weights),
   ``metrics.jsonl`` (copied at every validation), ``split.csv`` and ``loss_curve.png``.
   Checkpoints stay in ``--work`` on the machine.

3. Back here: the files lie in the run's ``files_at`` folder. Evaluate them on the same test
   split as the shipped weights, and ship them only if the held-out metrics are better::

       python weights/evaluate.py --weights <files_at>/model.safetensors \\
           --cache runs/cache-all --split <files_at>/split.csv --loss-curve <files_at>/metrics.jsonl

Rehearsal on CPU (tiny pack, 60 s of training)::

    python weights/gpu_round.py prepare <20 files> --groups weights/training-groups.csv \\
        --pack build/gpu-pack-small --no-wheels
    python weights/gpu_round.py run --pack build/gpu-pack-small --out /tmp/gpu-out \\
        --device cpu --deadline 200 --reserve 60 --bench-batches 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Packages the GPU machine lacks that holoprot imports at training time.
MISSING_THERE = ("gemmi",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="here: write the pack and download the wheels")
    prep.add_argument("structures", nargs="+", help="files, folders, globs, @lists")
    prep.add_argument("--pack", type=Path, default=REPO / "build" / "gpu-pack")
    prep.add_argument("--wheels", type=Path, default=REPO / "build" / "gpu-wheels")
    prep.add_argument("--no-wheels", action="store_true", help="only write the pack")
    prep.add_argument("--groups", type=Path, default=None, help="structure_id,group[,split] CSV")
    prep.add_argument("--group-pattern", default=None)
    prep.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions")
    prep.add_argument("--split-seed", type=int, default=0)
    prep.add_argument("--workers", type=int, default=None)
    chk = sub.add_parser("check", help="here: compare the pack with a dataset cache")
    chk.add_argument("--pack", type=Path, default=REPO / "build" / "gpu-pack")
    chk.add_argument("--cache", type=Path, required=True, help="holoprot train dataset cache")
    chk.add_argument("--structures", type=int, default=12, help="structures compared")
    chk.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("run", help="there: project, benchmark, train, write --out")
    run.add_argument("--pack", type=Path, default=REPO / "build" / "gpu-pack")
    run.add_argument("--wheels", type=Path, default=REPO / "build" / "gpu-wheels")
    run.add_argument("--out", type=Path, required=True, help="output folder ($OUT)")
    run.add_argument("--work", type=Path, default=Path("/tmp/holoprot-gpu-round"))
    run.add_argument("--device", default="cuda", help="cuda, or cpu for a rehearsal")
    run.add_argument("--deadline", type=float, default=500.0, help="s after start to be done")
    run.add_argument("--reserve", type=float, default=40.0, help="s kept for the final steps")
    run.add_argument("--train-seconds", type=float, default=None, help="at most this training")
    run.add_argument("--init", default="default", help="weights to continue from")
    run.add_argument("--batch-size", type=int, default=512)
    run.add_argument("--bench-batches", default="512,4096", help="encoder benchmark batch sizes")
    run.add_argument("--lr", type=float, default=6e-4)
    run.add_argument("--lr-final", type=float, default=1e-5)
    run.add_argument("--warmup-steps", type=int, default=100)
    run.add_argument(
        "--ema-decay", type=float, default=0.998, help="weight average (0: none), as round 7"
    )
    run.add_argument("--validations-per-epoch", type=int, default=5)
    run.add_argument("--checkpoint-every", type=int, default=200)
    run.add_argument("--seed", type=int, default=123456789)
    return p.parse_args(argv)


# ---- prepare / check (here) -------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> None:
    from holoprot.io.inputs import expand_inputs
    from holoprot.training.pack import build_pack

    fractions = tuple(float(f) for f in args.split.split(","))
    paths = [str(p) for p in expand_inputs(args.structures)]
    start = time.perf_counter()
    meta = build_pack(
        paths,
        args.pack,
        group_file=args.groups,
        group_pattern=args.group_pattern,
        fractions=fractions,  # type: ignore[arg-type]
        split_seed=args.split_seed,
        workers=args.workers,
    )
    size = sum(f.stat().st_size for f in args.pack.iterdir())
    print(
        f"pack {args.pack}: {meta['n_structures']} structures, {meta['n_residues']:,} residues,"
        f" {meta['n_atoms']:,} atoms, {size / 2**20:.1f} MiB, max coordinate error"
        f" {meta['max_coordinate_error']:.2g} Å, {len(meta['failures'])} failed,"
        f" {time.perf_counter() - start:.0f} s"
    )
    for line in meta["failures"]:
        print(f"  failed: {line}")
    if not args.no_wheels:
        download_wheels(args.wheels)


def download_wheels(folder: Path) -> None:
    """cp312 manylinux wheels of the packages the GPU machine lacks, at the versions here."""
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    for name in MISSING_THERE:
        platforms = [a for plat in PLATFORMS for a in ("--platform", plat)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp", *platforms,
             "-d", str(folder), f"{name}=={version(name)}"],
            check=True,
        )  # fmt: skip
    size = sum(f.stat().st_size for f in folder.glob("*.whl"))
    names = sorted(f.name for f in folder.glob("*.whl"))
    print(f"wheels {folder}: {', '.join(names)}, {size / 2**20:.1f} MiB")


def check(args: argparse.Namespace) -> None:
    """Project `--structures` random structures of the pack (numba, as `holoprot train`) and
    compare identity rows and coefficients with the cache's rows of the same source files: equal
    where the pack's coordinates are exact (max_error 0); the rest (files with more than three
    decimals) are listed with their largest and relative (RMS) coefficient difference."""
    import numpy as np

    from holoprot.training.dataset import load_dataset
    from holoprot.training.pack import load_pack

    pack, cache = load_pack(args.pack), load_dataset(args.cache)
    index = cache.index
    sources = index.column("source_path").to_numpy(zero_copy_only=False)
    identity = pack.identity()
    basis = pack.basis
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(pack), min(args.structures, len(pack)), replace=False))
    rounded = np.flatnonzero(pack.structures.column("max_error").to_numpy() > 0)
    chosen = np.union1d(chosen, rounded)
    worst = 0.0
    for s in chosen:
        r0, r1 = pack.residue_offsets[s], pack.residue_offsets[s + 1]
        source = identity.column("source_path")[int(r0)].as_py()
        rows = np.flatnonzero(sources == source)
        ours = identity.slice(int(r0), int(r1 - r0))
        theirs = index.take(rows).select(ours.column_names)
        if not ours.equals(theirs):
            raise SystemExit(f"{source}: identity rows differ between pack and cache")
        coefficients = basis.project_neighborhoods(pack.neighborhoods(int(s))).numpy()
        reference = cache.rows(rows)
        diff = float(np.abs(coefficients - reference).max())
        relative = float(np.sqrt(((coefficients - reference) ** 2).mean() / (reference**2).mean()))
        error = pack.structures.column("max_error")[int(s)].as_py()
        print(
            f"{source}: {r1 - r0} residues, coordinates rounded by <= {error:.2g} Å,"
            f" coefficients max |Δ| {diff:.3g}, relative RMS {relative:.3g}"
        )
        if error == 0:
            worst = max(worst, diff)
    print(f"{len(chosen)} structures, largest difference where the pack is exact: {worst:.3g}")
    if worst > 0:
        raise SystemExit("pack and cache differ")


# ---- run (there) ------------------------------------------------------------------------------
class Log:
    """Lines to stdout and to OUT/log.txt, stamped with seconds since the start."""

    def __init__(self, path: Path, start: float) -> None:
        self.path, self.start = path, start

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.start:7.1f} s] {message}"
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


def install_wheels(folder: Path, target: Path, log: Log) -> None:
    """Make the packages of MISSING_THERE importable, from the carried wheels if need be."""
    import importlib.util

    missing = [n for n in MISSING_THERE if importlib.util.find_spec(n) is None]
    if not missing:
        log(f"already installed: {', '.join(MISSING_THERE)}")
        return
    wheels = sorted(str(w) for w in folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{folder}: no wheels for the missing {', '.join(missing)}")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
         "--no-cache-dir", "--upgrade", "--target", str(target), *wheels],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    log(f"installed {', '.join(Path(w).name for w in wheels)} into {target}")


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def encoder_throughput(model, x, device, batch: int, repeats: int) -> float:  # noqa: ANN001
    """Residues/s of model.encode (eval, no grad) on `batch` rows of x, median of `repeats`."""
    import torch

    rows = x[:batch].to(device)
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.encode(rows)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first call is the warm-up
                times.append(time.perf_counter() - t0)
    return len(rows) / statistics.median(times)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    out, work = args.out, args.work
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = Log(out / "log.txt", start)
    log(f"gpu_round run: {' '.join(sys.argv[1:])}")
    install_wheels(args.wheels, work / "site", log)

    import numpy as np
    import torch

    from holoprot._util.devices import resolve_device
    from holoprot.model import HVAE, load_model_file
    from holoprot.model.weights import resolve_weights
    from holoprot.training.averaging import check_decay
    from holoprot.training.pack import load_pack, pack_dataset, project_pack
    from holoprot.training.run import finish
    from holoprot.training.trainer import Trainer, TrainSettings, plot_loss_curve

    if args.ema_decay:  # before minutes of projection, not when training starts
        check_decay(args.ema_decay)
    device = resolve_device(args.device)
    report: dict = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    log(f"device {device} ({report['gpu'] or platform.processor()}), torch {torch.__version__}")
    pack = load_pack(args.pack)
    log(f"pack: {len(pack)} structures, {pack.meta['n_residues']:,} residues")
    t0 = time.perf_counter()
    done = [0, t0]

    def progress(n: int) -> None:
        done[0] += n
        if time.perf_counter() - done[1] > 15:
            done[1] = time.perf_counter()
            log(f"projected {done[0]:,} neighbourhoods")

    coefficients = project_pack(pack, device, on_batch=progress)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    report["projection"] = {
        "backend": "torch" if device.type == "cuda" else "numba",
        "neighbourhoods": len(coefficients),
        "seconds": round(seconds, 2),
        "neighbourhoods_per_s": round(len(coefficients) / seconds),
        "includes": "neighbourhood search and projection, from the loaded pack",
    }
    log(f"projection: {len(coefficients):,} in {seconds:.1f} s")
    write_json(out / "report.json", report)

    data = pack_dataset(pack, coefficients)
    split = pack.split()
    rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    pack.write_split(out / "split.csv")
    init = resolve_weights(args.init)
    start_model, _ = load_model_file(init)
    torch.manual_seed(args.seed)
    model = HVAE(start_model.config)
    model.load_state_dict(start_model.state_dict())
    model.to(device)
    batches = [int(b) for b in args.bench_batches.split(",") if b]
    sample = torch.from_numpy(data.rows(rows["val"][: max(batches, default=0)]))
    repeats = 5 if device.type == "cuda" else 1
    report["encoder_residues_per_s"] = {
        str(b): round(encoder_throughput(model, sample, device, b, repeats)) for b in batches
    }
    log(f"encoder residues/s: {report['encoder_residues_per_s']}")
    write_json(out / "report.json", report)

    budget = args.deadline - args.reserve - (time.perf_counter() - start)
    budget = min(budget, args.train_seconds or budget)
    if budget <= 0:
        raise SystemExit(f"no time left to train ({budget:.0f} s): raise --deadline")
    settings = TrainSettings(
        epochs=1000,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr_final,
        lr_schedule="cosine",
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validations_per_epoch=args.validations_per_epoch,
        max_seconds=budget,
        ema_decay=args.ema_decay or None,
    )
    metadata = {
        "training_data": {
            "n_files": len(pack),
            "n_failed_files": len(pack.meta["failures"]),
            "n_residues": len(data),
            "n_groups": int(len(np.unique(pack.groups().astype(str)))),
            "split_residues": {k: int(len(v)) for k, v in rows.items()},
            "split_seed": pack.meta["split_seed"],
            "fractions": pack.meta["fractions"],
            "group_file": pack.meta["group_file"],
            "group_pattern": pack.meta["group_pattern"],
            "pack": {k: pack.meta[k] for k in ("coordinate_step", "max_coordinate_error")},
        },
        "initialised_from": str(init),
        "basis": pack.basis.metadata(),
        "radius": pack.meta["radius"],
        "hardware": {
            "device": str(device),
            "cuda": report["gpu"],
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
    }
    trainer = Trainer(model, data, rows["train"], rows["val"], work, settings, metadata, device)
    log(
        f"training {budget:.0f} s: {len(rows['train']):,} train / {len(rows['val']):,} val"
        f" residues, batch {args.batch_size}, lr {args.lr} cosine to {args.lr_final}"
    )

    def on_step(record: dict) -> None:
        if "val_loss" not in record:
            return
        if record.get("best"):
            copy_atomic(work / "best.safetensors", out / "model.safetensors")
            copy_atomic(work / "best.json", out / "model.json")
        copy_atomic(work / "metrics.jsonl", out / "metrics.jsonl")
        log(
            f"step {record['step']} samples {record['samples']:,} lr {record['lr']:.2e}"
            f" train {record['train_loss']:.4f} val {record['val_loss']:.4f}"
            f"{' (best)' if record.get('best') else ''} {record['samples_per_s']:.0f} samples/s"
        )

    trainer.fit(on_step=on_step)
    copy_atomic(work / "metrics.jsonl", out / "metrics.jsonl")
    records = [json.loads(ln) for ln in (work / "metrics.jsonl").read_text().splitlines()]
    steps = [r["samples_per_s"] for r in records if r["step"] > 20]
    report["training"] = {
        "steps": trainer.global_step,
        "samples_seen": trainer.samples_seen,
        "budget_s": round(budget, 1),
        "loop_s": round(trainer.elapsed, 1),
        "step_time_s": round(trainer.wall_time, 1),
        "samples_per_s": round(trainer.samples_seen / trainer.elapsed),
        "samples_per_s_steps_median": round(statistics.median(steps)) if steps else None,
        "best_val_loss": trainer.best_val,
        "batch_size": args.batch_size,
    }
    if device.type == "cuda":
        report["peak_cuda_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    write_json(out / "report.json", report)
    log(f"trained: {report['training']}")
    final = finish(work, data, rows["test"], device)
    meta = json.loads(final.with_suffix(".json").read_text())
    report["test"] = meta["metadata"].get("test")
    copy_atomic(final, out / "model.safetensors")
    copy_atomic(final.with_suffix(".json"), out / "model.json")
    plot_loss_curve(work / "metrics.jsonl", out / "loss_curve.png")
    report["total_s"] = round(time.perf_counter() - start, 1)
    write_json(out / "report.json", report)
    log(f"done: test {report['test']}, {report['total_s']} s in all")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from holoprot.errors import HoloprotError  # imports nothing beyond the standard library

    try:
        {"prepare": prepare, "check": check, "run": run}[args.command](args)
    except HoloprotError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
