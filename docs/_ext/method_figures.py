"""Figures of the method page, drawn from the code at each docs build (Sphinx extension).

Writes ``docs/generated/figures/{neighbourhood,coefficients,architecture}.png``: one residue's
neighbourhood (4ZHL, His57 of uPA, the README's search example), its Zernike coefficients per
degree and channel, and the H-AE's layers as :class:`holoprot.model.HVAE` builds them.
"""

from __future__ import annotations

import os
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.patches import FancyArrowPatch, Rectangle
from scipy.spatial.transform import Rotation

import holoprot

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[2]
STRUCTURE = ROOT / "examples" / "structures" / "4zhl.cif"
#: The centre residue: chain, author number, name.
CENTRE = ("U", 57, "HIS")
CHANNEL_COLOURS = {"C": "0.35", "N": "tab:blue", "O": "tab:red", "S": "gold"}
DPI = 110
#: Height of one degree's cell in the architecture drawing.
CELL = 0.3


def _save(fig: plt.Figure, path: Path) -> None:
    """Save a PNG atomically (a temporary file in the same folder, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def _centre_neighbourhood() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The centre residue's neighbourhood: coords (A, 3) Å from its Cα, element (A,), whether
    each atom belongs to the centre residue (A,) bool and to the peptide chain P (A,) bool."""
    s = holoprot.read_structure(STRUCTURE)
    chain, number, name = CENTRE
    (res,) = np.flatnonzero((s.chain == chain) & (s.seq_num == number) & (s.res_name == name))
    nbh = holoprot.extract_neighborhoods(s, residues=np.array([res]))
    atom_res = s.residue_index[nbh.atom_index]
    return nbh.coords, nbh.element, atom_res == res, s.chain[atom_res] == "P"


def neighbourhood_figure(
    coords: np.ndarray, element: np.ndarray, centre: np.ndarray, peptide: np.ndarray
) -> plt.Figure:
    """3D scatter of the atoms within 10 Å of the Cα, coloured by element channel."""
    fig = plt.figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(projection="3d")
    u, v = np.mgrid[0 : 2 * np.pi : 36j, 0 : np.pi : 18j]
    radius = 10.0
    ax.plot_wireframe(
        radius * np.cos(u) * np.sin(v),
        radius * np.sin(u) * np.sin(v),
        radius * np.cos(v),
        color="0.85",
        linewidth=0.4,
    )
    for symbol, colour in CHANNEL_COLOURS.items():
        pick = element == symbol
        for group, size, edge, label in (
            (pick & ~centre & ~peptide, 14, "none", f"{symbol}"),
            (pick & peptide, 24, "black", None),
            (pick & centre, 60, "tab:green", None),
        ):
            if group.any():
                ax.scatter(
                    *coords[group].T, s=size, c=colour, edgecolors=edge, linewidths=1.5, label=label
                )
    ax.scatter([0], [0], [0], marker="*", s=220, c="black", label="centre Cα (not projected)")
    _, number, name = CENTRE
    label = f"{name.title()}{number}"
    for size, edge, text in (
        (60, "tab:green", f"{label} (centre residue)"),
        (24, "black", "peptide chain P"),
    ):
        ax.scatter([], [], s=size, c="white", edgecolors=edge, linewidths=1.5, label=text)
    ax.set(xlabel="x (Å)", ylabel="y (Å)", zlabel="z (Å)", box_aspect=(1, 1, 1))
    lim = (-radius, radius)
    ax.set(xlim=lim, ylim=lim, zlim=lim)
    title = f"{STRUCTURE.stem.upper()} {label}: {len(coords)} atoms within {radius:.0f} Å of its Cα"
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(-0.05, 1.0))
    fig.tight_layout()
    return fig


def _degree_norms(basis: holoprot.ZernikeBasis, coefficients: np.ndarray) -> np.ndarray:
    """Rotation-invariant norms sqrt(Σ_m f²) as (channels, lmax + 1, nmax + 1); NaN where n − l
    is odd or n < l (no basis function)."""
    layout = basis.layout()
    power = np.full((len(basis.channels), basis.lmax + 1, basis.nmax + 1), np.nan)
    index = (layout["channel"], layout["l"], layout["n"])
    power[index] = 0.0
    np.add.at(power, index, coefficients.astype(float) ** 2)
    return np.sqrt(power)


def coefficients_figure(coords: np.ndarray, element: np.ndarray) -> plt.Figure:
    """Per channel, the norm of each (n, l) block of coefficients, and the power per degree."""
    basis = holoprot.ZernikeBasis()
    f = basis.project_atoms(coords, element, backend="torch")
    norms = _degree_norms(basis, f)
    rotation = Rotation.random(random_state=0).as_matrix()
    turned = basis.project_atoms(coords @ rotation.T, element, backend="torch")
    rotated = _degree_norms(basis, turned)
    vmax = np.nanmax(norms)
    big = norms > 1e-3 * vmax
    change = np.max(np.abs(rotated[big] - norms[big]) / norms[big])

    fig = plt.figure(figsize=(9.6, 7.6))
    grid = fig.add_gridspec(
        2, 5, width_ratios=[1, 1, 1, 1, 0.07], height_ratios=[1.3, 1], hspace=0.45, wspace=0.3
    )
    colour = LogNorm(vmin=1e-3 * vmax, vmax=vmax)
    for c, symbol in enumerate(basis.channels):
        ax = fig.add_subplot(grid[0, c])
        image = ax.imshow(
            norms[c].T,
            origin="lower",
            aspect="auto",
            cmap="magma",
            norm=colour,
            interpolation="none",
        )
        ax.set_facecolor("0.93")
        ax.set_title(f"{symbol}: {int((element == symbol).sum())} atoms", fontsize=11)
        ax.set_xlabel("degree l")
        ax.set_xticks(range(0, basis.lmax + 1, 2))
        ax.set_yticks(range(0, basis.nmax + 1, 4))
        if c == 0:
            ax.set_ylabel("radial order n")
    fig.colorbar(image, cax=fig.add_subplot(grid[0, 4]), label="√(Σₘ f²) per (n, l)")

    ax = fig.add_subplot(grid[1, :4])
    layout = basis.layout()
    degree_power = np.zeros((len(basis.channels), basis.lmax + 1))
    np.add.at(degree_power, (layout["channel"], layout["l"]), f.astype(float) ** 2)
    bottom = np.zeros(basis.lmax + 1)
    for c, symbol in enumerate(basis.channels):
        ax.bar(
            range(basis.lmax + 1),
            degree_power[c],
            bottom=bottom,
            color=CHANNEL_COLOURS[symbol],
            label=symbol,
        )
        bottom += degree_power[c]
    ax.set(xlabel="degree l", ylabel="Σ f² over n, m")
    ax.set_xticks(range(basis.lmax + 1))
    ax.legend(title="channel", fontsize=9, ncols=4, loc="upper center")
    ax.set_title("power per degree", fontsize=11)
    fig.suptitle(
        f"The neighbourhood's {basis.dim} Zernike coefficients. A random rotation changes none of"
        f" the\nnorms above by more than {change:.1e} (relative; float32): they are invariant.",
        fontsize=11,
    )
    fig.subplots_adjust(left=0.08, right=0.93, bottom=0.08, top=0.88)
    return fig


def _cells(ax: plt.Axes, x: float, y: float, irreps: dict[int, int], lmax: int) -> None:
    """Draw a feature as stacked cells, degree 0 at the bottom, width ∝ channels."""
    cmap = plt.get_cmap("viridis", lmax + 1)
    for l, mul in irreps.items():
        w = 0.15 + 0.7 * mul / 128
        ax.add_patch(
            Rectangle(
                (x - w / 2, y + CELL * l), w, 0.9 * CELL, facecolor=cmap(l), edgecolor="white"
            )
        )


def _irreps_label(irreps: dict[int, int]) -> str:
    muls = set(irreps.values())
    ls = sorted(irreps)
    if len(muls) == 1:
        return f"{muls.pop()}×(0–{ls[-1]})"
    return f"{sum(m * (2 * l + 1) for l, m in irreps.items())}"


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.35", lw=1.2)
    )


def _row(
    ax: plt.Axes, columns: list[tuple[str, dict[int, int], int]], xs: list[float], y: float
) -> None:
    """One row of features: cells, name above, channels × degrees and parameters below."""
    lmax = max(max(irreps) for _, irreps, _ in columns)
    for x, (name, irreps, n_params) in zip(xs, columns, strict=True):
        _cells(ax, x, y, irreps, lmax)
        ax.text(x, y + CELL * (lmax + 1) + 0.05, name, ha="center", va="bottom", fontsize=10)
        ax.text(x, y - 0.08, _irreps_label(irreps), ha="center", va="top", fontsize=10)
        if n_params:
            ax.text(
                x,
                y - 0.38,
                f"{n_params / 1000:.0f} k",
                ha="center",
                va="top",
                fontsize=9,
                color="0.4",
            )
    for a, b in pairwise(xs):
        direction = 1 if b > a else -1
        _arrow(ax, (a + direction * 0.42, y + 0.12), (b - direction * 0.42, y + 0.12))


def architecture_figure() -> plt.Figure:
    """The default H-AE (z = 128) as built by :class:`holoprot.model.HVAE` on the meta device."""
    from holoprot.model import HVAE, HVAEConfig

    config = HVAEConfig()
    model = HVAE(config, device="meta")

    def params(*modules: torch.nn.Module) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    first = model.encoder_blocks[0].irreps_in
    encoder = [("input", config.irreps, 0), ("lin.", first, params(model.initial_projection))]
    encoder += [(f"enc{i}", b.irreps_out, params(b)) for i, b in enumerate(model.encoder_blocks)]
    top = {0: config.ch_sizes[-1], 1: config.ch_sizes[-1]}
    heads = params(model.decoder_bottleneck, model.first_decoder_projection)
    decoder = [("z, frame", top, heads)]
    decoder += [(f"dec{i}", b.irreps_out, params(b)) for i, b in enumerate(model.decoder_blocks)]
    decoder.append(("output", config.irreps, params(model.final_projection)))

    step = 1.05
    xs = [i * step for i in range(len(encoder))]
    y_top, y_bottom = 3.6, 0.0
    fig, ax = plt.subplots(figsize=(10.5, 6.6))
    _row(ax, encoder, xs, y_top)
    _row(ax, decoder, xs[::-1][: len(decoder)], y_bottom)

    x_end = xs[-1]
    x_box = x_end + 1.55
    y_mid = (y_top + y_bottom + CELL * (config.lmax + 1)) / 2 - 0.1
    boxes = [
        (f"z: {config.latent_dim}, invariant", "tab:orange", y_mid + 0.05),
        ("frame: 3×3", "tab:cyan", y_mid - 0.5),
    ]
    for text, colour, y in boxes:
        ax.add_patch(Rectangle((x_box - 0.8, y), 1.6, 0.45, facecolor=colour, alpha=0.85))
        ax.text(x_box, y + 0.22, text, ha="center", va="center", fontsize=10)
    _arrow(ax, (x_end + 0.45, y_top + 0.2), (x_box, y_mid + 0.52))
    _arrow(ax, (x_box, y_mid - 0.52), (x_end + 0.45, y_bottom + 0.4))
    ax.text(
        x_box - 0.8,
        y_top + 1.5,
        f"z = Linear(l = 0): {params(model.encoder_mean) / 1000:.0f} k\n"
        f"frame: 2 learned l = 1\nvectors, Gram–Schmidt",
        fontsize=9.5,
        va="center",
    )

    cmap = plt.get_cmap("viridis", config.lmax + 1)
    for l in range(config.lmax + 1):
        ax.add_patch(Rectangle((x_box - 0.8 + 0.23 * l, -0.75), 0.2, 0.2, facecolor=cmap(l)))
        ax.text(x_box - 0.7 + 0.23 * l, -0.5, str(l), ha="center", va="bottom", fontsize=9)
    ax.text(x_box - 0.8, -0.85, "degree l of each cell", fontsize=9.5, va="top")
    ax.set_xlim(-0.6, x_box + 0.9)
    ax.set_ylim(-1.2, y_top + CELL * (config.lmax + 1) + 0.45)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        f"encoder → (z, frame) → decoder: {params(model):,} parameters", fontsize=12, loc="left"
    )
    fig.tight_layout()
    return fig


def write_figures(out_dir: Path) -> list[Path]:
    """Draw the method page's figures into `out_dir`; the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    coords, element, centre, peptide = _centre_neighbourhood()
    figures = {
        "neighbourhood.png": neighbourhood_figure(coords, element, centre, peptide),
        "coefficients.png": coefficients_figure(coords, element),
        "architecture.png": architecture_figure(),
    }
    for name, fig in figures.items():
        _save(fig, out_dir / name)
    return [out_dir / name for name in figures]


def _on_builder_inited(app: object) -> None:
    write_figures(Path(app.srcdir) / "generated" / "figures")


def setup(app: object) -> dict[str, object]:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
