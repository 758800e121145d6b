"""Per-residue H-(V)AE embeddings: the Python API behind `holoprot embed`.

    >>> import holoprot
    >>> df = holoprot.embed(["1abc.pdb"])            # one row per residue, `latent` column
    >>> model, info = holoprot.load_model("default")

Files are parsed and projected in worker processes while the encoder runs in this one; rows of
consecutive files are batched together for the encoder and come out in input order, a file's
residues in chunks, so memory stays bounded whatever the number of inputs and the size of each.
On a CPU in fp32 the encoder is :class:`~holoprot.model.cpu_encoder.CPUEncoder` (NumPy, no
torch import); on a GPU, or in bf16, the torch model.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from holoprot._util.devices import check_precision, resolve_device_name
from holoprot.errors import HoloprotError
from holoprot.io.tables import IDENTITY_SCHEMA, file_metadata, vector_array, vector_field
from holoprot.model.description import read_model_files
from holoprot.model.weights import resolve_weights
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import Neighborhoods
from holoprot.zernike.pipeline import (
    CHUNK_RESIDUES,
    FailedInput,
    ProjectedChunk,
    ProjectionSettings,
    TableChunk,
    available_cpus,
    iter_projected_chunks,
)

if TYPE_CHECKING:
    from holoprot.model import HVAE
    from holoprot.model.cpu_encoder import CPUEncoder

#: Rough float32 working memory of one sample in encoder inference (measured at batch 512 on
#: the z=128 model, with margin); used by batch_size="auto" on CUDA.
_BYTES_PER_SAMPLE = 4_000_000


def encoder_workers(n_inputs: int) -> int:
    """Parsing/projection processes to run beside the encoder: a quarter of the CPUs (the encoder
    is the heavier stage), none for a single file or on fewer than 4 CPUs, where one process doing
    everything with all threads is faster than splitting the cores."""
    cpus = available_cpus()
    if n_inputs <= 1 or cpus < 4:
        return 0
    return max(1, min(n_inputs, cpus // 4))


def encoder_threads(workers: int) -> int:
    """Threads of the encoder on the CPU beside `workers` parsing/projection processes (one
    thread each): the CPUs they leave, at least one."""
    return max(1, available_cpus() - workers)


def load_model(weights: str | os.PathLike = "default", device: str = "auto") -> tuple[HVAE, dict]:
    """Load named or local weights (checksum verified) as a torch model in eval mode.

    Returns (model, info) where info holds ``name``, ``sha256``, ``path`` and the file metadata.
    """
    from holoprot._util.devices import resolve_device
    from holoprot.model.serialization import model_from_files

    stem = resolve_weights(weights)
    files = read_model_files(stem)
    model = model_from_files(files, resolve_device(device))
    info = {"name": stem.name, "sha256": files.info["sha256"], "path": str(stem)}
    return model, {**info, "metadata": files.metadata}


@dataclass(frozen=True)
class Embedding:
    """Latents (M, latent_dim) and frames (M, 3, 3) (rows x̂, ŷ, ẑ), float32."""

    latent: np.ndarray
    frame: np.ndarray


class Embedder:
    """Zernike projection + H-(V)AE encoder with fixed weights.

    Args:
        weights: a name (``default``) or a path to ``.safetensors``.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: neighbourhoods per encoder call, or ``"auto"`` (fit the free GPU memory;
            512 on CPU).
        chunk_residues: residues of a file projected at once (bounds memory; the latents do
            not depend on it).
        precision: ``fp32``, or ``bf16`` (most encoder matmuls in bfloat16, see
            :meth:`holoprot.model.HVAE.encode`: latents within ~0.7 % of fp32); refused with a
            HoloprotError where the device has no bfloat16 hardware.

    ``device`` is then the device's name (``"cpu"``, ``"cuda"``, …). On a CPU in fp32 the
    encoder is the torch-free :class:`~holoprot.model.cpu_encoder.CPUEncoder` (latents equal to
    the torch model's within 1e-5 relative); ``model`` (the torch :class:`~holoprot.model.HVAE`
    on ``device``) is loaded when first asked for.
    """

    def __init__(
        self,
        weights: str | os.PathLike = "default",
        device: str = "auto",
        batch_size: int | str = 512,
        chunk_residues: int = CHUNK_RESIDUES,
        precision: str = "fp32",
    ) -> None:
        self.stem = resolve_weights(weights)
        self.device: str = resolve_device_name(device)
        check_precision(precision, self.device)
        self.precision = precision
        files = read_model_files(self.stem)
        self.config = files.config
        self.weights_name: str = self.stem.name
        self.weights_sha256: str = files.info["sha256"]
        self.metadata: dict = files.metadata
        self._model: HVAE | None = None
        self._cpu_encoder: CPUEncoder | None = None
        if self.device == "cpu" and precision == "fp32":
            from holoprot.model.cpu_encoder import CPUEncoder
            from holoprot.model.description import load_state_arrays

            self._cpu_encoder = CPUEncoder(files.config, load_state_arrays(files))
        else:
            from holoprot.model.serialization import model_from_files

            self._model = model_from_files(files, self.device)
        basis = self.metadata.get("basis", {})
        self.basis = ZernikeBasis(
            lmax=basis.get("lmax", 6),
            nmax=basis.get("nmax", 20),
            rcut=basis.get("rcut", 10.0),
            channels=tuple(basis.get("channels", ("C", "N", "O", "S"))),
            normalization=basis.get("normalization", "square"),
        )
        self.radius: float = float(self.metadata.get("radius", self.basis.rcut))
        if self.basis.irreps != self.config.irreps_in:
            raise HoloprotError(
                f"{self.stem}: model irreps {self.config.irreps_in} do not match its"
                f" basis {self.basis.irreps}"
            )
        self.batch_size = self._pick_batch_size(batch_size)
        if not isinstance(chunk_residues, int) or chunk_residues < 1:
            raise HoloprotError(f"chunk size must be a positive integer, got {chunk_residues}")
        self.chunk_residues = chunk_residues

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def model(self) -> HVAE:
        """The torch model on ``device``, in eval mode (loaded on first use)."""
        if self._model is None:
            self._model = load_model(self.stem, self.device)[0]
        return self._model

    def use_threads(self, threads: int) -> None:
        """Run the encoder on `threads` CPU threads (torch's, or the CPU encoder's: its BLAS and
        numba kernels)."""
        if self._cpu_encoder is not None:
            self._cpu_encoder.use_threads(threads)
        else:
            import torch

            torch.set_num_threads(threads)

    def _pick_batch_size(self, batch_size: int | str) -> int:
        if batch_size == "auto":
            if not self.device.startswith("cuda"):
                return 512
            import torch

            free, _ = torch.cuda.mem_get_info(self.device)
            return int(max(64, min(16384, 0.7 * free // _BYTES_PER_SAMPLE)))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise HoloprotError(
                f"batch size must be a positive integer or 'auto', got {batch_size}"
            )
        return batch_size

    def embed_coefficients(self, coefficients: np.ndarray) -> Embedding:
        """Encode raw Zernike coefficients (M, dim) in batches of `batch_size`; z = the latent
        mean."""
        x = np.asarray(coefficients, dtype=np.float32)
        if not len(x):
            return Embedding(
                np.zeros((0, self.latent_dim), np.float32), np.zeros((0, 3, 3), np.float32)
            )
        parts = [
            self.encode_batch(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)
        ]
        return Embedding(
            np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        )

    def encode_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One encoder call: ``x (B, dim)`` float32 → latents ``(B, latent_dim)`` and frames
        ``(B, 3, 3)``, float32. In float32 a row's result can depend on the other rows of its
        batch in the last bits (≤ 1e-6 relative with the CPU encoder's BLAS)."""
        if self._cpu_encoder is not None:
            return self._cpu_encoder.encode(x)
        import torch

        with torch.no_grad():
            batch = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            z_mean, _, frame = self.model.encode(batch, self.precision)
        return z_mean.float().cpu().numpy(), frame.float().cpu().numpy()

    def embed_neighborhoods(self, nbh: Neighborhoods) -> np.ndarray:
        """Latents of a ragged batch of neighbourhoods: (M, latent_dim) float32."""
        return self.embed_coefficients(self.basis.coefficients(nbh)).latent

    def settings(
        self, model: int | None = None, chains: Sequence[str] | None = None
    ) -> ProjectionSettings:
        return ProjectionSettings(
            basis=self.basis,
            radius=self.radius,
            model=model,
            chains=tuple(chains) if chains else None,
            chunk_residues=self.chunk_residues,
        )

    def file_metadata(self, frames: bool, precision: str | None = None) -> dict[bytes, bytes]:
        """Parquet metadata of an embedding table made by this embedder (or by one like it at
        another `precision`)."""
        return file_metadata(
            {
                "weights_name": self.weights_name,
                "weights_sha256": self.weights_sha256,
                "latent_dim": self.latent_dim,
                "basis": self.basis.metadata(),
                "radius": self.radius,
                "frames": frames,
                "precision": precision or self.precision,
            }
        )

    def schema(self, frames: bool, precision: str | None = None) -> pa.Schema:
        """Columns and metadata of its tables (at `precision`, default its own)."""
        fields = [*IDENTITY_SCHEMA, vector_field("latent", self.latent_dim)]
        if frames:
            fields.append(vector_field("frame", 9))
        return pa.schema(fields).with_metadata(self.file_metadata(frames, precision))

    def iter_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        model: int | None = None,
        chains: Sequence[str] | None = None,
        frames: bool = False,
        workers: int | None = None,
    ) -> Iterator[pa.Table | FailedInput]:
        """Per input, in input order: its table (identity + latent [+ frame]) or a FailedInput
        (`iter_chunks` joined per input: a file's rows are held at once)."""
        pieces: list[pa.Table] = []
        chunks = self.iter_chunks(paths, model=model, chains=chains, frames=frames, workers=workers)
        for item in chunks:
            if isinstance(item, FailedInput):
                yield item
                continue
            pieces.append(item.table)
            if item.last:
                yield pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces).combine_chunks()
                pieces = []

    def iter_chunks(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        model: int | None = None,
        chains: Sequence[str] | None = None,
        frames: bool = False,
        workers: int | None = None,
    ) -> Iterator[TableChunk | FailedInput]:
        """Each input's rows (identity + latent [+ frame]) in chunks of at most
        `chunk_residues`, or a FailedInput, in input order; memory holds one chunk and one
        encoder batch besides the file being parsed.

        Encoder batches are those of encoding the inputs whole, a file at a time: rows of
        consecutive files share a batch; after the file that brings the rows since the last
        partial batch to `batch_size` or more, the rest is one partial batch. So the latents do
        not depend on `chunk_residues` (float32 sums follow the batch).
        """
        paths = [str(p) for p in paths]
        if workers is None:
            workers = encoder_workers(len(paths))
        stream = iter_projected_chunks(paths, self.settings(model, chains), workers=workers)
        batches = _Batches(self, frames)
        for item in stream:
            batches.add(item)
            yield from batches.ready()
        batches.flush()
        yield from batches.ready()


class _Batches:
    """The encoder's side of `Embedder.iter_chunks`: rows are encoded `batch_size` at a time as
    they come, a partial batch where `iter_chunks` says, and each chunk's table is handed out
    once its rows are encoded."""

    def __init__(self, embedder: Embedder, frames: bool) -> None:
        self.embedder, self.frames = embedder, frames
        self.schema = embedder.schema(frames)
        self.waiting: deque[ProjectedChunk | FailedInput] = deque()  # not yet handed out
        self.rows: deque[np.ndarray] = deque()  # coefficients not yet encoded, in order
        self.n_rows = 0
        self.since_partial = 0  # rows since the last partial batch
        self.latent: list[np.ndarray] = []  # encoded, not yet handed out
        self.frame: list[np.ndarray] = []
        self.n_encoded = 0

    def add(self, item: ProjectedChunk | FailedInput) -> None:
        self.waiting.append(item)
        if isinstance(item, FailedInput):
            return
        n = len(item.coefficients)
        self.rows.append(item.coefficients)
        self.n_rows += n
        self.since_partial += n
        size = self.embedder.batch_size
        while self.n_rows >= size:
            self._encode(size)
        if item.last and self.since_partial >= size:
            self.flush()

    def flush(self) -> None:
        """Encode the rows left as one (partial) batch."""
        if self.n_rows:
            self._encode(self.n_rows)
        self.since_partial = 0

    def _encode(self, n: int) -> None:
        taken, need = [], n
        while need:
            head = self.rows.popleft()
            if len(head) > need:
                self.rows.appendleft(head[need:])
                head = head[:need]
            taken.append(head)
            need -= len(head)
        self.n_rows -= n
        emb = self.embedder.embed_coefficients(np.concatenate(taken))
        self.latent.append(emb.latent)
        self.frame.append(emb.frame)
        self.n_encoded += n

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` encoded rows: latents (n, latent_dim) and frames (n, 3, 3)."""
        latent, frame = np.concatenate(self.latent), np.concatenate(self.frame)
        self.latent, self.frame = [latent[n:]], [frame[n:]]
        self.n_encoded -= n
        return latent[:n], frame[:n]

    def ready(self) -> Iterator[TableChunk | FailedInput]:
        """The waiting items whose rows are all encoded, in order."""
        while self.waiting:
            item = self.waiting[0]
            if isinstance(item, ProjectedChunk):
                n = len(item.coefficients)
                if n > self.n_encoded:
                    return
                latent, frame = self._take(n)
                table = item.identity.append_column(
                    self.schema.field("latent"), [vector_array(latent)]
                )
                if self.frames:
                    table = table.append_column(
                        self.schema.field("frame"), [vector_array(frame.reshape(n, 9))]
                    )
                item = TableChunk(
                    item.source, table.replace_schema_metadata(self.schema.metadata), item.last
                )
            self.waiting.popleft()
            yield item


def embed_table(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    weights: str | os.PathLike = "default",
    *,
    device: str = "auto",
    batch_size: int | str = 512,
    frames: bool = False,
    chains: Sequence[str] | None = None,
    model: int | None = None,
    skip_errors: bool = False,
    workers: int | None = None,
    precision: str = "fp32",
) -> pa.Table:
    """Embed every residue of the given structure files (or folders, globs, @lists).

    Returns a pyarrow Table: identity columns, ``latent`` (fixed_size_list<float32>[latent_dim])
    and, with ``frames``, ``frame`` (9 floats, rows x̂, ŷ, ẑ). Raises HoloprotError on the first
    bad input unless ``skip_errors``, and before any work if two inputs share a structure id.
    ``precision``: as for `Embedder`.
    """
    from holoprot.io.inputs import check_unique_ids, expand_inputs

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = expand_inputs([str(p) for p in items])
    check_unique_ids(files)
    embedder = Embedder(weights, device, batch_size, precision=precision)
    tables = []
    for item in embedder.iter_files(
        files, model=model, chains=chains, frames=frames, workers=workers
    ):
        if isinstance(item, FailedInput):
            if not skip_errors:
                raise HoloprotError(item.message)
            continue
        tables.append(item)
    schema = embedder.schema(frames)
    return pa.concat_tables(tables) if tables else schema.empty_table()


def embed(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    weights: str | os.PathLike = "default",
    **kwargs: object,
):  # -> pandas.DataFrame
    """`embed_table` as a pandas DataFrame (vector columns hold NumPy arrays)."""
    return embed_table(paths, weights, **kwargs).to_pandas()


__all__ = ["Embedder", "Embedding", "embed", "embed_table", "load_model"]
