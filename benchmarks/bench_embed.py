"""End-to-end throughput of `holoprot embed`: structure files → per-residue latents → Parquet.

Two ways of running the same path, each timed by wall clock around a fresh Python process, so
interpreter start-up, imports, loading the weights, the worker pool's start-up and the final
Parquet commit are all included:

* ``api``: this script in child mode does what the CLI does: ``tune_malloc()``,
  ``Embedder(weights, device, batch_size)``, ``ResidueTableWriter(out, schema, schema.metadata)``,
  ``writer.write(table)`` for every table of ``Embedder.iter_files(paths, workers=W)``,
  ``writer.commit(paths)``. It also reports the in-process time (after the imports: from before
  ``Embedder`` is built, so loading the weights is included, to after the commit).
* ``cli``: ``holoprot embed @LIST -o OUT.parquet --weights W --device D --batch-size B
  [--workers W] --skip-errors``, through the console script's entry point
  (``holoprot.cli:app``) in a ``python -c`` wrapper that records peak RSS on exit.

Residues/s = rows in the written Parquet file / median wall time over ``--repeats`` runs after
one untimed warm-up run per variant. Peak RSS: ``getrusage(RUSAGE_SELF).ru_maxrss`` of the main
process (model + encoder + writer) and ``RUSAGE_CHILDREN`` (the largest worker process, which
parses and projects). Variants: every combination of ``--modes``, ``--devices`` (``cuda`` is
skipped when torch sees no GPU) and ``--workers`` (``default`` = what the CLI picks:
CPUs − 1 workers for several files, none for one). ``OMP_NUM_THREADS`` is set to ``--threads``
in the child (BASELINE.md ran the reference CLI with ``OMP_NUM_THREADS=2``).

Structure files: as in bench_zernike.py (``--structures``, default ``data/structures-matched``
if present, else ``examples/structures/`` + ``tests/data/structures/``; first
``--max-files``). Weights:
``--weights`` (default ``default``; a name or a ``.safetensors`` path). ``--tiny-weights`` makes
a small random model in a temporary folder instead, for smoke runs only: its encoder is far
cheaper than the z=128 model, so those figures mean nothing.

    python benchmarks/bench_embed.py [--structures DIR ...] [--max-files 50] [--weights default]
        [--devices cpu,cuda] [--workers default] [--modes api,cli] [--repeats 3] [--threads 2]

Prints a Markdown table row per variant for benchmarks/RESULTS.md. Timings are not checked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_model, default_structures, mb, row, structure_files

REFERENCE = (
    "93 (HV CLI, 6 PDBs, its own timer; 75 by wall clock incl. start-up);"
    " 107–115 (HV hvae_inference per file)"
)
TARGET = "≥ 1,000 residues/s on 2 CPU cores"

# Runs the console script's entry point, then writes peak RSS of itself and its children.
_CLI_WRAPPER = """
import json, resource, sys
out = sys.argv.pop(1)
try:
    from holoprot.cli import app
    app(prog_name="holoprot")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as fh:
    json.dump({
        "exit": code if isinstance(code, int) else (0 if code is None else 1),
        "peak_rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }, fh)
sys.exit(code)
"""


def make_tiny_weights(folder: Path) -> str:
    """A small random H-AE with the default basis, saved under `folder`; returns its path."""
    import torch

    from holoprot.model import HVAE, HVAEConfig, save_model

    torch.manual_seed(0)
    model = HVAE(HVAEConfig(latent_dim=16, ch_initial=8, ch_sizes=(8, 8, 8, 8, 16, 16)))
    return str(save_model(model, folder / "tiny", {"note": "random, for benchmark smoke runs"}))


# ---- child mode: the API path ------------------------------------------------------------------


def child_api(spec_path: str) -> None:
    """Embed the spec's files to its Parquet output as the CLI does; write a JSON result."""
    spec = json.loads(Path(spec_path).read_text())
    start = time.perf_counter()
    from holoprot._util.allocator import tune_malloc
    from holoprot.embedding.embedder import Embedder
    from holoprot.io.output import ResidueTableWriter
    from holoprot.zernike.pipeline import FailedInput

    t_import = time.perf_counter() - start
    tune_malloc()
    embedder = Embedder(spec["weights"], spec["device"], spec["batch_size"])
    embedder.use_threads(spec["threads"])
    t_model = time.perf_counter() - start - t_import
    schema = embedder.schema(False)
    writer = ResidueTableWriter(spec["output"], schema, schema.metadata)
    failed = residues = 0
    for item in embedder.iter_files(spec["paths"], workers=spec["workers"]):
        if isinstance(item, FailedInput):
            failed += 1
            continue
        writer.write(item)
        residues += item.num_rows
    writer.commit(spec["paths"])
    on_gpu = embedder.device.startswith("cuda")
    if on_gpu:
        import torch

        torch.cuda.synchronize(embedder.device)
    result = {
        "residues": residues,
        "failed": failed,
        "seconds_imports": t_import,
        "seconds_model_load": t_model,
        "seconds_in_process": time.perf_counter() - start - t_import,
        "peak_rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "device": str(embedder.device),
    }
    if on_gpu:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(embedder.device) / 1024**2
    Path(spec["result"]).write_text(json.dumps(result))


# ---- driver ----------------------------------------------------------------------------------


def _rows_in(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(parquet).num_rows


def run_once(
    mode: str,
    device: str,
    workers: str,
    paths: list[str],
    args: argparse.Namespace,
    tmp: Path,
) -> dict:
    """One fresh process embedding `paths`; returns its measurements plus the wall time."""
    output = tmp / "out.parquet"
    result_file = tmp / "result.json"
    for f in (output, result_file):
        f.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if mode == "api":
        spec = tmp / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "paths": paths,
                    "weights": args.weights,
                    "device": device,
                    "batch_size": args.batch_size,
                    "workers": None if workers == "default" else int(workers),
                    "threads": args.threads,
                    "output": str(output),
                    "result": str(result_file),
                }
            )
        )
        cmd = [sys.executable, __file__, "--child", str(spec)]
    else:
        listing = tmp / "inputs.txt"
        listing.write_text("\n".join(paths) + "\n")
        cmd = [sys.executable, "-c", _CLI_WRAPPER, str(result_file), "embed", f"@{listing}"]
        cmd += ["-o", str(output), "--weights", args.weights, "--device", device]
        cmd += ["--batch-size", str(args.batch_size), "--skip-errors"]
        if workers != "default":
            cmd += ["--workers", workers]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"{mode} run failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(result_file.read_text())
    result["seconds_wall"] = wall
    result["rows"] = _rows_in(output)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", help="files, folders, globs or @lists")
    parser.add_argument("--max-files", type=int, default=50, help="0 = all")
    parser.add_argument("--weights", default="default", help="name or .safetensors path")
    parser.add_argument("--tiny-weights", action="store_true", help="smoke runs only")
    parser.add_argument("--devices", default="cpu,cuda", help="cuda skipped if unavailable")
    parser.add_argument("--workers", default="default", help="e.g. default,0,1,2")
    parser.add_argument("--modes", default="api,cli")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_api(args.child)
        return

    import torch

    from holoprot.errors import HoloprotError
    from holoprot.model.weights import resolve_weights

    devices = [d for d in args.devices.split(",") if d]
    if not torch.cuda.is_available():
        skipped = [d for d in devices if d.startswith("cuda")]
        devices = [d for d in devices if not d.startswith("cuda")]
        if skipped:
            print(f"no CUDA device: skipping {', '.join(skipped)}")
    paths = structure_files(args.structures, args.max_files)
    if not paths or not devices:
        parser.error("no structure files found" if not paths else "no usable device")
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp_name:
        tmp = Path(tmp_name)
        if args.tiny_weights:
            args.weights = make_tiny_weights(tmp / "weights")
        try:
            weights_path = resolve_weights(args.weights)
        except HoloprotError as exc:
            parser.error(f"{exc}; pass --weights PATH.safetensors (or --tiny-weights to smoke-run)")
        gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
        print(
            f"# bench_embed: {cpu_model()}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__};"
            f" {len(paths)} files from {' '.join(args.structures or default_structures())};"
            f" weights {weights_path}{' (TINY RANDOM MODEL: smoke run only)' * args.tiny_weights}"
        )
        rows: list[str] = []
        for mode in args.modes.split(","):
            for device in devices:
                for workers in args.workers.split(","):
                    run_once(mode, device, workers, paths, args, tmp)  # warm-up
                    results = [
                        run_once(mode, device, workers, paths, args, tmp)
                        for _ in range(args.repeats)
                    ]
                    rows_out = results[0]["rows"]
                    wall = statistics.median(r["seconds_wall"] for r in results)
                    parent = max(mb(r["peak_rss_self_kb"]) for r in results)
                    child = max(mb(r["peak_rss_children_kb"]) for r in results)
                    extra = ""
                    if mode == "api":
                        inproc = statistics.median(r["seconds_in_process"] for r in results)
                        load = statistics.median(r["seconds_model_load"] for r in results)
                        imports = statistics.median(r["seconds_imports"] for r in results)
                        extra = (
                            f"; in process {rows_out / inproc:,.0f} residues/s (after imports"
                            f" of {imports:.2f} s; model load {load:.2f} s included)"
                        )
                        if "peak_cuda_mb" in results[0]:
                            extra += f"; peak CUDA {results[0]['peak_cuda_mb']:,.0f} MB"
                        failed = f", {results[0]['failed']} files failed"
                    else:
                        failed = ""
                    label = f"{mode}, {device}, workers={workers}"
                    print(
                        f"{label}: {rows_out / wall:,.0f} residues/s incl. start-up"
                        f" ({rows_out:,} residues{failed}, median wall {wall:.2f} s){extra};"
                        f" peak RSS main {parent:,.0f} MB, largest worker {child:,.0f} MB"
                    )
                    rows.append(
                        row(
                            f"end to end, {'holoprot embed CLI' if mode == 'cli' else 'API'},"
                            f" {device}, workers={workers}"
                            + (" (TINY RANDOM MODEL)" if args.tiny_weights else ""),
                            f"{len(paths)} files, {rows_out:,} residues",
                            f"{rows_out / wall:,.0f} residues/s incl. start-up;"
                            f" peak RSS {parent:,.0f} + {child:,.0f} MB",
                            REFERENCE,
                            TARGET,
                        )
                    )
    print("\nMarkdown rows (measurement | inputs | holoprot | reference | target):")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
