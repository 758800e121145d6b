"""Throughput of the z=128 H-AE: encoder inference and a training step.

Prints residues/s for ``model.encode`` (eval, no grad), samples/s for one training step
(forward + backward + Adam, train mode) and the process's peak RSS. Each number is the median of
``--repeats`` timed calls after one warm-up (wall clock; the CPU time of the process is printed
beside it). Inputs are random (throughput does not depend on the values); weights are a fresh
init. The allocator is tuned as the `holoprot` command tunes it
(:func:`holoprot._util.allocator.tune_malloc`) unless ``--default-malloc``, and idle OpenMP
threads sleep as in the command (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it).

The encoder's work is counted from the layers' shapes (per residue): multiply-adds of the
channel-mixing matmuls (initial projection, each CG block's linear layer over the nonzero
tensor-product paths, the latent and frame heads; 2 FLOP each) and of the sparse tensor products
(per nonzero CG term and channel: 2 multiplies and an add, 3 FLOP); achieved GFLOP/s is set
against a measured fp32 matmul (2048 × 2048 × 2048) on the same threads.

``--compare-base PATH`` times the code at PATH (e.g. a git worktree of an older commit) in a
subprocess with ``PYTHONPATH=PATH``, on the same model and inputs, its calls alternating with this
code's (so a busy machine slows both alike), and prints the latents' largest difference
between the two. On a CPU in fp32 the torch-free CPU encoder that `holoprot embed` uses there
(:mod:`holoprot.model.cpu_encoder`) is timed too, on the same weights and inputs, with its
latents' difference from the torch encoder's. ``--profile`` prints torch.profiler's top
operators of ``encode`` (and of the base's). ``--precision bf16`` runs this code's encoder
matmuls in bfloat16 (``HVAE.encode(x, precision=...)``).

    python benchmarks/bench_model.py [--batch 512] [--repeats 3] [--device cpu|cuda] [--threads 2]
        [--default-malloc] [--skip-train] [--precision fp32|bf16] [--compare-base DIR]
        [--profile]
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
from collections.abc import Callable
from pathlib import Path

from holoprot._util.devices import passive_thread_waits

passive_thread_waits()  # idle threads sleep, as in the `holoprot` command (before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

PROFILE_ROWS = 12


def _timed(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


class _Bench:
    """The model, inputs and timed calls one side of a comparison runs (`holoprot` as imported:
    this checkout, or the base in the worker process)."""

    def __init__(self, batch: int, device: torch.device, precision: str | None) -> None:
        from holoprot.model import HVAE, HVAEConfig, hvae_loss

        torch.manual_seed(0)
        self.device = device
        self.model = HVAE(HVAEConfig()).to(device)
        self.x = torch.randn(batch, self.model.config.dim, device=device) * 0.1
        self.kwargs = {} if precision is None else {"precision": precision}
        self.loss = hvae_loss
        self.opt: torch.optim.Optimizer | None = None

    def encode(self) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad():
            return self.model.encode(self.x, **self.kwargs)[0]

    def step(self) -> None:
        self.model.train()
        if self.opt is None:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        loss, _ = self.loss(self.model(self.x))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def run(self, what: str) -> tuple[float, float]:
        return _timed(self.encode if what == "encode" else self.step, self.device)

    def cpu_encoder(self, threads: int) -> Callable[[str], tuple[float, float]]:
        """A runner of the torch-free CPU encoder (`holoprot.model.cpu_encoder`, what `holoprot
        embed` uses on CPUs) on this model's weights and inputs (``encode`` only)."""
        from holoprot.model.cpu_encoder import CPUEncoder

        state = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        encoder = CPUEncoder(self.model.config, state)
        encoder.use_threads(threads)
        x = self.x.cpu().numpy()
        self.cpu_latents = lambda: encoder.encode(x)[0]
        return lambda task: _timed(lambda: encoder.encode(x), self.device)

    def profile(self) -> str:
        from torch.profiler import ProfilerActivity, profile

        self.encode()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                self.encode()
        return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS)


def _worker(args: argparse.Namespace) -> None:
    """Serve timing requests on stdin, one JSON line out per line in (the base's side)."""
    import holoprot

    bench = _Bench(args.batch, torch.device(args.device), None)
    print(json.dumps({"holoprot": holoprot.__file__}), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command in ("encode", "step"):
            reply: object = bench.run(command)
        elif command == "latents":
            np.save(arg, bench.encode().float().cpu().numpy())
            reply = arg
        elif command == "profile":
            reply = bench.profile()
        else:
            return
        print(json.dumps(reply), flush=True)


class _Base:
    """The base code's worker process."""

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        paths = [str(path), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        command = [sys.executable, __file__, "--worker", "--batch", str(args.batch)]
        command += ["--device", args.device, "--threads", str(args.threads)]
        if args.default_malloc:
            command.append("--default-malloc")
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.module = self._read()["holoprot"]
        if not Path(self.module).resolve().is_relative_to(path.resolve()):
            raise SystemExit(f"--compare-base {path}: the worker imported {self.module}")

    def _read(self) -> object:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the base's worker process ended early")
        return json.loads(line)

    def ask(self, command: str) -> object:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _latent_difference(bench: _Bench, base: _Base) -> float:
    """Largest |z − z_base| / largest |z_base| of the two sides' ``encode``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "base.npy")
        base.ask(f"latents {path}")
        want = np.load(path)
    got = bench.encode().float().cpu().numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())


def encoder_work(model: torch.nn.Module) -> tuple[int, int]:
    """Per residue: (matmul multiply-adds, tensor-product term·channel products) of `encode`."""
    from holoprot.model.layers import SO3Linear

    def linear_macs(layer: SO3Linear) -> int:
        return sum((2 * l + 1) * w.shape[0] * w.shape[1] for l, w in _weights(layer))

    macs = linear_macs(model.initial_projection) + linear_macs(model.frame_learner)
    macs += model.encoder_mean.weight.numel()
    if model.encoder_log_var is not None:
        macs += model.encoder_log_var.weight.numel()
    terms = 0
    for block in model.encoder_blocks:
        tp = block.tp
        for l, w in _weights(block.linear):
            if l in tp.nonzero_paths:
                macs += (2 * l + 1) * len(tp.nonzero_channels(l)) * w.shape[1]
        starts = tp._terms.group_start
        terms += int(starts[-1] - starts[0]) * tp.mul
    return macs, terms


def _weights(layer: torch.nn.Module) -> list[tuple[int, torch.Tensor]]:
    return [(int(l), w) for l, w in layer.weights.items()]


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """GFLOP/s of the best of 3 ``n × n × n`` matmuls."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = min(_timed(lambda: a @ b, device)[0] for _ in range(4))
    return 2 * n**3 / best / 1e9


def _median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--default-malloc", action="store_true", help="do not tune_malloc()")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    parser.add_argument("--compare-base", type=Path, default=None, metavar="DIR")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from holoprot._util.allocator import tune_malloc

    tuned = False if args.default_malloc else tune_malloc()
    torch.set_num_threads(args.threads)
    if args.worker:
        _worker(args)
        return
    device = torch.device(args.device)
    bench = _Bench(args.batch, device, args.precision)
    base = None if args.compare_base is None else _Base(args.compare_base, args)
    runners: dict[str, Callable[[str], tuple[float, float]]] = {"this code": bench.run}
    numpy_side = device.type == "cpu" and args.precision in (None, "fp32")
    if numpy_side:
        runners["this code, CPU encoder"] = bench.cpu_encoder(args.threads)
    if base is not None:
        runners[f"base {args.compare_base}"] = lambda task: tuple(base.ask(task))  # type: ignore[misc]
    tasks = ["encode"] if args.skip_train else ["encode", "step"]
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    latent_diff = None
    for task in tasks:
        for i in range(args.repeats + 1):  # the first call of each side is the warm-up
            for side, run in runners.items():
                if task == "step" and side == "this code, CPU encoder":
                    continue
                sample = run(task)
                if i:
                    samples.setdefault((task, side), []).append(sample)
        if task == "encode" and base is not None:  # before training steps change the weights
            latent_diff = _latent_difference(bench, base)
        if task == "encode" and numpy_side:
            z = bench.encode().float().numpy()
            cpu_diff = float(np.abs(bench.cpu_latents() - z).max() / np.abs(z).max())
    medians = {key: _median(values) for key, values in samples.items()}
    macs, terms = encoder_work(bench.model)
    flop = 2 * macs + 3 * terms
    peak = matmul_peak(device)
    lines = [
        f"encoder work per residue: {macs / 1e6:.2f} M matmul multiply-adds"
        f" + {terms / 1e6:.2f} M tensor-product term-channels = {flop / 1e6:.1f} MFLOP;"
        f" fp32 matmul peak {peak:.0f} GFLOP/s on {args.threads} threads"
    ]
    for side in runners:
        precision = (args.precision or "fp32") if side == "this code" else "fp32"
        wall, cpu = medians[("encode", side)]
        rate = args.batch * flop / wall / 1e9
        lines.append(
            f"encoder (eval, no grad, {precision}), batch {args.batch}, {side}:"
            f" {args.batch / wall:,.0f} residues/s, {rate:.0f} GFLOP/s"
            f" ({100 * rate / peak:.0f} % of the matmul peak), CPU {cpu / wall:.2f} cores"
        )
        if not args.skip_train and ("step", side) in medians:
            wall, cpu = medians[("step", side)]
            lines.append(
                f"train step (fwd+bwd+Adam), batch {args.batch}, {side}:"
                f" {args.batch / wall:,.0f} samples/s ({wall:.2f} s/step), CPU {cpu / wall:.2f}"
                " cores"
            )
    if numpy_side:
        lines.append(
            f"CPU encoder's latents: largest difference from the torch encoder's {cpu_diff:.1e}"
            " of the largest |z|"
        )
    if base is not None:
        pairs = [(task, "this code") for task in tasks]
        if numpy_side:
            pairs.append(("encode", "this code, CPU encoder"))
        for task, side in pairs:
            (base_wall, base_cpu), (wall, cpu) = (
                medians[(task, f"base {args.compare_base}")],
                medians[(task, side)],
            )
            lines.append(
                f"{task}: {side} at {base_wall / wall:.2f}x the base's throughput (median wall"
                f" clock), {base_cpu / cpu:.2f}x per CPU second (steadier on a busy machine)"
            )
        lines.append(
            f"latents (same weights and inputs): largest difference from the base's"
            f" {latent_diff:.1e} of the largest |z|"
        )
    if args.profile:
        lines.append(f"profile of 3 encoder calls, this code:\n{bench.profile()}")
        if base is not None:
            lines.append(f"profile of 3 encoder calls, base:\n{base.ask('profile')}")
    if base is not None:
        base.close()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    lines.append(f"peak RSS: {peak_rss:.2f} GB (malloc {'tuned' if tuned else 'default'})")
    if device.type == "cuda":
        lines.append(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 1024**3:.2f} GB")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
