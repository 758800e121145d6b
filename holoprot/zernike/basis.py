"""Projection of atomic neighbourhoods onto 3D Zernike functions ("zernikegrams").

For an atom at x (Å, relative to the neighbourhood centre), r = |x|, ρ = min(r, rcut) / rcut and
x̂ = x / r, the basis functions are

    Z_nlm(x) = R_nl(ρ) · Y_lm(x̂),      0 ≤ l ≤ lmax,  l ≤ n ≤ nmax,  n − l even,

with R_nl the radial polynomials of `holoprot.zernike.radial` (the reference's floor-division
binomial constant, evaluated in float64 and only then cast to the output dtype) and Y_lm e3nn's
real spherical harmonics with 'component' normalisation (Σ_m Y_lm² = 2l + 1, component order of
l = 1 is (x, y, z), polar axis y), evaluated through monomials (`holoprot.zernike.monomials`) by
the torch backend and by a solid-harmonic recurrence in the CPU kernel (`_kernel_cpu`).

With 'square' normalisation each atom contributes Z(x) / ‖Z(x)‖², ‖Z‖² summed over all
single-channel basis functions (427 at lmax 6, nmax 20); with None atoms are summed as they are.
Atoms are grouped into element channels (C, N, O, S by default) by their full element symbol:
unlike the reference, which truncates elements to one character (Fe → F, Se → S, Ca²⁺ → C), a
selenium or calcium atom never enters the S or C channel (SPEC pitfall 3).

The flat layout of the output (l-major → channel → n → m, the reference's; 1708 floats at the
defaults) is `holoprot.zernike.layout.ZernikeLayout`.

Rotation: projecting R·x gives D(R)·f, with D = e3nn `wigner_D(l, *matrix_to_angles(R))` per degree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from holoprot._util.devices import use_numba
from holoprot.zernike.layout import ZernikeLayout
from holoprot.zernike.monomials import monomials, monomials_to_sh
from holoprot.zernike.radial import chebyshev_tables, radial_tables

if TYPE_CHECKING:
    import torch

    from holoprot.zernike.neighborhoods import Neighborhoods

DEFAULT_CHANNELS: tuple[str, ...] = ("C", "N", "O", "S")

#: Padded atom rows projected per chunk: bounds memory at about 1.2 kB per row (float32).
_CHUNK_ATOMS = 32768


def _powers(x: torch.Tensor, n: int) -> torch.Tensor:
    """x^0 … x^(n−1) by repeated products (faster and exact-er than pow): (A,) → (A, n)."""
    import torch

    cols = [torch.ones_like(x)]
    for _ in range(n - 1):
        cols.append(cols[-1] * x)
    return torch.stack(cols, dim=1)


def _chunks(counts: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split segments into runs whose padded size Σ_c (segments × largest count of channel c)
    stays within `budget` atoms (or one segment, if it alone exceeds it). counts: (C, S)."""
    runs, start = [], 0
    width = np.zeros(counts.shape[0], dtype=np.int64)
    for i in range(counts.shape[1]):
        grown = np.maximum(width, counts[:, i])
        if i > start and (i + 1 - start) * int(grown.sum()) > budget:
            runs.append((start, i))
            start, grown = i, counts[:, i].copy()
        width = grown
    runs.append((start, counts.shape[1]))
    return runs


@dataclass(frozen=True)
class ZernikeBasis:
    """The 3D Zernike basis and the flat coefficient layout.

    Args:
        lmax: highest spherical-harmonic degree.
        nmax: highest radial order n.
        rcut: radius of the ball, Å; atoms beyond it are evaluated at ρ = 1.
        channels: element symbols, one channel each, matched against full upper-case symbols.
        normalization: 'square' (each atom weighted by 1/‖Z‖²) or None (plain sums).
    """

    lmax: int = 6
    nmax: int = 20
    rcut: float = 10.0
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    normalization: str | None = "square"
    _layout: ZernikeLayout = field(init=False, repr=False, compare=False)
    _tables: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.lmax < 0 or self.nmax < self.lmax:
            raise ValueError(f"need 0 <= lmax <= nmax, got lmax={self.lmax}, nmax={self.nmax}")
        if self.rcut <= 0:
            raise ValueError(f"rcut must be positive, got {self.rcut}")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must be distinct element symbols, got {self.channels}")
        if self.normalization not in ("square", None):
            raise ValueError(f"normalization must be 'square' or None, got {self.normalization!r}")
        object.__setattr__(self, "channels", tuple(c.upper() for c in self.channels))
        layout = ZernikeLayout.build(self.lmax, self.nmax, len(self.channels))
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_tables", self._build_tables())

    def _build_tables(self) -> dict:
        """Numerical tables of the torch projection (float64 values, int64 indices; the CPU
        kernel's are `_cpu_kernel_tables`). Radial function i is (radial_l[i], radial_n[i]), in
        the layout's order; radial_slices and mono_slices, (lmax + 1, 2), are the [start, end)
        radial functions and monomials of each degree l."""
        lay = self._layout
        ls = np.arange(self.lmax + 1)
        coeffs, even = radial_tables(lay.radial_l, lay.radial_n, self.nmax)
        mono_to_sh = monomials_to_sh(self.lmax)
        radial_end = np.cumsum(lay.n_per_l)
        n_mono = (ls + 1) * (ls + 2) // 2
        mono_end = np.cumsum(n_mono)
        return {
            "even_coeffs": even,  # (powers of ρ², n_radial)
            "radial_slices": np.stack([radial_end - lay.n_per_l, radial_end], axis=1),
            "radial_l_onehot": (lay.radial_l[:, None] == ls[None, :]) * (2.0 * ls + 1),
            "mono_to_sh": mono_to_sh,  # C_l per l
            "mono_slices": np.stack([mono_end - n_mono, mono_end], axis=1),
            "radial_l": lay.radial_l,
            "radial_n": lay.radial_n,
            "coeffs": coeffs,  # (nmax + 1 powers of ρ, n_radial)
        }

    def _cpu_kernel_tables(self) -> dict[str, np.ndarray]:
        """The tables `_kernel_cpu.project_segments` takes (shapes in its docstring), built on
        first use (they need numba) and kept."""
        if "cpu_kernel" in self._tables:
            return self._tables["cpu_kernel"]
        from holoprot.zernike._kernel_cpu import e3nn_harmonic_tables

        lay, lmax = self._layout, self.lmax
        cheb, normsq = chebyshev_tables(self._tables["even_coeffs"], lay.radial_l)
        l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)  # degree of each k
        m = np.arange((lmax + 1) ** 2) - l * (l + 1)
        order = np.arange(cheb.shape[0])[:, None]  # i: radial order n = l + 2i
        valid = order < lay.n_per_l[l]  # (J, K), a prefix of k in each row (K_l falls with l)
        first = np.cumsum(lay.n_per_l) - lay.n_per_l  # first radial function of each degree
        function = np.where(valid, first[l] + order, 0)
        channel = np.arange(len(self.channels))[:, None, None]
        tables = {
            "normsq": normsq,
            "radial": np.where(valid[:, None, :], cheb[:, function].transpose(1, 0, 2), 0.0),
            "k_end": valid.sum(axis=1),
            "out_index": np.where(valid, lay.index(l, channel, l + 2 * order, m), 0),
            **e3nn_harmonic_tables(lmax),
        }
        self._tables["cpu_kernel"] = tables
        return tables

    # ---- layout ---------------------------------------------------------------------------
    @property
    def n_per_l(self) -> np.ndarray:
        """K_l: number of radial orders n per degree l, shape (lmax + 1,)."""
        return self._layout.n_per_l

    @property
    def single_channel_dim(self) -> int:
        """Number of basis functions per channel (427 at the defaults)."""
        return self.dim // len(self.channels)

    @property
    def dim(self) -> int:
        """Length of the flat coefficient vector (1708 at the defaults)."""
        return self._layout.dim

    @property
    def irreps(self) -> str:
        """e3nn irreps string of the flat vector, e.g. '44x0e+40x1e+…+32x6e'."""
        return self._layout.irreps

    @property
    def l_offsets(self) -> np.ndarray:
        """Start index of each degree l in the flat vector, shape (lmax + 1,) (a fresh array)."""
        return self._layout.l_offsets.copy()

    def layout(self) -> dict[str, np.ndarray]:
        """Per flat index: degree l, channel index, radial order n and m (−l…l); each (dim,) int64
        (fresh arrays)."""
        return {k: getattr(self._layout, k).copy() for k in ("l", "channel", "n", "m")}

    def metadata(self) -> dict[str, object]:
        """The parameters that define the coefficients, for file metadata."""
        return {
            "basis": "zernike",
            "lmax": self.lmax,
            "nmax": self.nmax,
            "rcut": self.rcut,
            "channels": list(self.channels),
            "normalization": self.normalization,
            "irreps": self.irreps,
            "dim": self.dim,
            "radial_constant": "binom(k+l,k) (reference floor-division binomial)",
            "sh": "e3nn real, component normalisation",
        }

    # ---- evaluation ----------------------------------------------------------------------
    def channel_index(self, element: np.ndarray) -> np.ndarray:
        """Channel of each atom from its full element symbol (any case), −1 if in no channel;
        (N,) int64."""
        element = np.asarray(element, dtype=str)
        if element.size == 0:
            return np.full(element.shape, -1, dtype=np.int64)
        codes = np.ascontiguousarray(element).reshape(-1).view(np.uint32)
        if np.any((codes >= ord("a")) & (codes <= ord("z"))):  # upper-casing is the slow part
            element = np.char.upper(element)
        element = np.ascontiguousarray(element)
        # symbols of 1 or 2 characters (4 or 8 bytes of UCS-4) compare as one integer each
        as_int = {4: np.uint32, 8: np.uint64}.get(element.dtype.itemsize)
        keys = element.view(as_int) if as_int else element
        first: dict[str, int] = {}
        for index, symbol in enumerate(self.channels):
            first.setdefault(symbol, index)  # the first listed wins on repeats
        found = np.zeros(element.shape, dtype=np.int64)  # channel + 1, 0 for none
        for symbol, index in first.items():
            key = np.array(symbol, dtype=element.dtype)
            if key == symbol:  # else longer than the array's symbols: no atom has it
                found += (keys == (key.view(as_int) if as_int else key)) * (index + 1)
        return found - 1

    def radial(self, rho: torch.Tensor) -> torch.Tensor:
        """R_nl(ρ) for ρ in [0, 1]: (A,) → (A, n_radial), in rho's dtype (use float64)."""
        import torch

        powers = rho[:, None] ** torch.arange(self.nmax + 1, device=rho.device, dtype=rho.dtype)
        coeffs = torch.as_tensor(self._tables["coeffs"], dtype=rho.dtype, device=rho.device)
        return powers @ coeffs

    def project(
        self,
        coords: torch.Tensor,
        channel: torch.Tensor,
        segment: torch.Tensor,
        n_segments: int,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
    ) -> torch.Tensor:
        """Sum the basis over the atoms of each segment (neighbourhood), per channel.

        Args:
            coords: (A, 3) Å, relative to each segment's centre; no atom at the centre.
            channel: (A,) int, channel of each atom, −1 for atoms in no channel (ignored).
            segment: (A,) int in [0, n_segments), the neighbourhood of each atom.
            n_segments: number of neighbourhoods S (segments without atoms give zeros).
            dtype: torch.float32 (None, the default) or torch.float64 for the basis and the sums.
            backend: 'numba' (fused CPU kernel, `holoprot.zernike._kernel_cpu`, float64 throughout),
                'torch' (batched tensor code, any device) or 'auto' (numba on CPU, else torch).

        Returns:
            (S, dim) coefficients in the flat layout, on coords' device.

        How: R_nl(ρ)·Y_lm(x̂) = Q_nl(ρ²)·Y_lm(u) with u = ρ·x̂ and Q_nl = R_nl / ρ^l, because
        e3nn's Y_l are homogeneous polynomials of degree l. Writing Y_l(u) = M_l(u)·C_l with M_l
        the (l+1)(l+2)/2 monomials of degree l, a channel's sum is Σ_a w_a Q(a)ᵀ M_l(a) · C_l.
        The torch backend does one batched matrix product per l over the atoms of each (segment,
        channel) group (padded) and applies the small change of basis C_l once per group instead
        of once per atom. The numba backend (`_kernel_cpu`) sums Y_lm(u) themselves (a
        recurrence) against Chebyshev polynomials of ρ² and turns those into the Q_nl once per
        group.
        """
        import torch

        dtype = torch.float32 if dtype is None else dtype
        if use_numba(backend, coords.device.type == "cpu"):
            arrays = (t.cpu().numpy() for t in (coords, channel, segment))
            return self._project_cpu(*arrays, n_segments, dtype, coords.device)
        dev = coords.device
        n_ch = len(self.channels)
        keep = channel >= 0
        # channel-major keys: the atoms of (channel c, segments s0…s1) are one contiguous run
        key = channel[keep].to(torch.int64) * n_segments + segment[keep].to(torch.int64)
        order = torch.argsort(key, stable=True)
        coords = coords[keep][order]
        counts = torch.bincount(key[order], minlength=n_ch * n_segments).reshape(n_ch, n_segments)
        counts_np = counts.cpu().numpy()
        ends = np.concatenate([[0], np.cumsum(counts_np)])  # flat (channel, segment) order
        out = torch.zeros(n_segments, self.dim, dtype=dtype, device=dev)
        for s0, s1 in _chunks(counts_np, _CHUNK_ATOMS):
            for c in range(n_ch):
                a0, a1 = int(ends[c * n_segments + s0]), int(ends[c * n_segments + s1])
                if a1 > a0:
                    self._project_channel(coords[a0:a1], counts[c, s0:s1], c, out[s0:s1])
        return out

    def _project_cpu(
        self,
        coords: np.ndarray,
        channel: np.ndarray,
        segment: np.ndarray,
        n_segments: int,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> torch.Tensor:
        """The numba backend of :meth:`project` on NumPy arrays (atoms of channel −1 dropped),
        with as many threads as torch uses (one for fewer than 64 neighbourhoods, where a
        parallel launch costs more than it saves); the result in `dtype` on `device`."""
        import torch

        from holoprot._util.devices import set_numba_threads

        keep = channel >= 0
        if not keep.all():
            coords, channel, segment = coords[keep], channel[keep], segment[keep]
        set_numba_threads(torch.get_num_threads() if n_segments >= 64 else 1)
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        out = self.project_arrays(coords, channel, segment, n_segments, np_dtype)
        return torch.from_numpy(out).to(device=device, dtype=dtype)

    def project_arrays(
        self,
        coords: np.ndarray,
        channel: np.ndarray,
        segment: np.ndarray,
        n_segments: int,
        dtype: type[np.floating] = np.float64,
    ) -> np.ndarray:
        """:meth:`project` on NumPy arrays with the numba kernel (no torch): coords (A, 3) Å,
        channel (A,) in [0, n_channels), segment (A,) → (n_segments, dim) in `dtype` (np.float64
        or np.float32; computed in float64, rounded once). Runs on the numba threads the caller
        set (`holoprot._util.devices.set_numba_threads`)."""
        from holoprot.zernike._kernel_cpu import project_segments

        order = np.argsort(segment, kind="stable") if np.any(np.diff(segment) < 0) else slice(None)
        xyz = np.ascontiguousarray(coords[order], dtype=np.float64)
        ch = np.ascontiguousarray(channel[order], dtype=np.int64)
        counts = np.bincount(segment, minlength=n_segments)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out = np.empty((n_segments, self.dim), dtype=dtype)
        t = self._cpu_kernel_tables()
        project_segments(
            xyz, ch, offsets, float(self.rcut), self.normalization == "square", t["normsq"],
            t["radial"], t["k_end"], t["out_index"], t["p_row"], t["cs_row"], t["scale"],
            self.lmax, out,
        )  # fmt: skip
        return out

    def _project_channel(
        self, coords: torch.Tensor, counts: torch.Tensor, channel: int, out: torch.Tensor
    ) -> None:
        """Add the coefficients of one channel for consecutive segments into `out` (S, dim).

        coords: (A, 3) the channel's atoms of those segments, segment by segment; counts: (S,).
        """
        import torch

        t = self._tables
        dev, dtype = coords.device, out.dtype
        x64 = coords.to(torch.float64)
        r = torch.linalg.vector_norm(x64, dim=1)
        rho = torch.clamp(r, max=self.rcut) / self.rcut
        rho2 = rho * rho
        q = _powers(rho2, t["even_coeffs"].shape[0]) @ torch.as_tensor(
            t["even_coeffs"], device=dev
        )  # (A, n_radial) float64
        if self.normalization == "square":
            # ‖Z‖² = Σ_l (2l + 1) ρ^2l Σ_n Q_nl²   (Σ_m Y_lm² = 2l + 1, 'component')
            per_l = (q * q) @ torch.as_tensor(t["radial_l_onehot"], device=dev)
            normsq = (per_l * _powers(rho2, self.lmax + 1)).sum(dim=1)
            q = q / normsq[:, None]
        mono = monomials((x64 * (rho / r)[:, None]).to(dtype), self.lmax)
        n_seg = len(counts)
        segment = torch.repeat_interleave(torch.arange(n_seg, device=dev), counts)
        pos = torch.arange(len(segment), device=dev) - (torch.cumsum(counts, 0) - counts)[segment]
        width = int(counts.max())
        qp = torch.zeros(n_seg, width, q.shape[1], dtype=dtype, device=dev)
        qp[segment, pos] = q.to(dtype)
        mp = torch.zeros(n_seg, width, mono.shape[1], dtype=dtype, device=dev)
        mp[segment, pos] = mono
        for l in range(self.lmax + 1):
            r0, r1 = t["radial_slices"][l]
            m0, m1 = t["mono_slices"][l]
            moments = torch.bmm(qp[:, :, r0:r1].transpose(1, 2), mp[:, :, m0:m1])
            block = moments @ torch.as_tensor(t["mono_to_sh"][l], dtype=dtype, device=dev)
            start = self._layout.index(l, channel, l, -l)
            out[:, start : start + block.shape[1] * block.shape[2]] = block.reshape(n_seg, -1)

    def project_atoms(
        self,
        coords: np.ndarray,
        element: Sequence[str] | np.ndarray,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
    ) -> np.ndarray:
        """Coefficients of one neighbourhood: coords (A, 3) Å relative to the centre → (dim,)
        (`dtype` and `backend` as in :meth:`project`)."""
        import torch

        c = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
        ch = torch.as_tensor(self.channel_index(np.asarray(element)))
        seg = torch.zeros(len(ch), dtype=torch.int64)
        return self.project(c, ch, seg, 1, dtype, backend)[0].numpy()

    def project_neighborhoods(
        self,
        nbh: Neighborhoods,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        backend: str = "auto",
    ) -> torch.Tensor:
        """Coefficients of every neighbourhood of a ragged batch: (M, dim) on `device`
        (`dtype` and `backend` as in :meth:`project`)."""
        import torch

        segment, channel = self._segments(nbh)
        if use_numba(backend, torch.device(device).type == "cpu"):
            dtype = torch.float32 if dtype is None else dtype
            n = len(nbh.offsets) - 1
            return self._project_cpu(nbh.coords, channel, segment, n, dtype, device)
        keep = channel >= 0
        return self.project(
            torch.as_tensor(nbh.coords[keep]).to(device),
            torch.as_tensor(channel[keep]).to(device),
            torch.as_tensor(segment[keep]).to(device),
            len(nbh.offsets) - 1,
            dtype,
            backend,
        )

    def coefficients(self, nbh: Neighborhoods) -> np.ndarray:
        """Coefficients of every neighbourhood as a NumPy (M, dim) float32 array, with the numba
        kernel and no torch (what `holoprot zernike` and the embedding pipeline use); equal to
        ``project_neighborhoods(nbh, backend="numba").numpy()``."""
        segment, channel = self._segments(nbh)
        keep = channel >= 0
        n = len(nbh.offsets) - 1
        return self.project_arrays(nbh.coords[keep], channel[keep], segment[keep], n, np.float32)

    def _segments(self, nbh: Neighborhoods) -> tuple[np.ndarray, np.ndarray]:
        """Neighbourhood index and channel of each atom of a ragged batch, both (A,) int64."""
        n_atoms = np.diff(nbh.offsets)
        segment = np.repeat(np.arange(len(n_atoms)), n_atoms)
        return segment, self.channel_index(nbh.element)
