"""Microenvironment search: exact and HNSW indexes over real latents, queries, files, the CLI.

The latents are those of the small public structures in tests/data/structures and
examples/structures/, embedded once per session with the shipped weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLES_DIR, LARGE, MMCIF, STRUCTURES_DIR
from typer.testing import CliRunner

from holoprot._util.hashing import seal
from holoprot.cli import app
from holoprot.errors import HoloprotError
from holoprot.io.output import STAGING_DIR, write_tables
from holoprot.search import Index, hnsw
from holoprot.search.embeddings import HIT_COLUMNS, Embeddings, latent_matrix
from holoprot.search.exact import exact_search, normalise
from holoprot.search.index import EXACT_BELOW
from holoprot.search.queries import parse_query, query_table

HVR = EXAMPLES_DIR / "1hvr.pdb"


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory) -> Path:
    """Embeddings Parquet of the test structures (but the 6,608-residue unit cell) and examples."""
    from holoprot.embedding.embedder import Embedder
    from holoprot.io.inputs import expand_inputs

    files = [f for f in expand_inputs([str(STRUCTURES_DIR), str(EXAMPLES_DIR)]) if f != LARGE]
    path = tmp_path_factory.mktemp("search") / "emb.parquet"
    tables = list(Embedder("default", "cpu").iter_files(files, workers=0))
    pq.write_table(pa.concat_tables(tables), path)
    return path


@pytest.fixture(scope="session")
def exact_index(embeddings) -> Index:
    return Index.build(embeddings, method="exact")


@pytest.fixture(scope="session")
def hnsw_index(embeddings) -> Index:
    return Index.build(embeddings, method="hnsw", threads=1)


def _latents(path: Path) -> np.ndarray:
    return latent_matrix(pq.read_table(path, columns=["latent"]).column(0))


def test_exact_search_equals_numpy_brute_force(embeddings, exact_index):
    x = _latents(embeddings)
    rng = np.random.default_rng(0)
    q = x[rng.choice(len(x), 200, replace=False)] + rng.normal(0, 0.01, (200, x.shape[1]))
    distances, rows = exact_index.search_vectors(q, k=10)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    full = 1.0 - qn @ xn.T
    expected = np.argsort(full, axis=1, kind="stable")[:, :10]
    want = np.take_along_axis(full, expected, 1)
    # float32 scoring may swap two neighbours whose float64 distances (≤ 2) differ by less than
    # its rounding (~1e-6): the rows' own float64 distances must be the k smallest, to 1e-5
    np.testing.assert_allclose(np.take_along_axis(full, rows, 1), want, atol=1e-5)
    assert (rows == expected).mean() > 0.99
    assert all(len(set(r)) == len(r) for r in rows.tolist())
    np.testing.assert_allclose(distances, want, atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_exact_search_blocks_and_k_above_n():
    rng = np.random.default_rng(1)
    db = normalise(rng.normal(size=(7, 4)))
    q = normalise(rng.normal(size=(5, 4)))
    distances, rows = exact_search(db, q, k=20)
    assert rows.shape == (5, 7)
    np.testing.assert_array_equal(np.sort(rows, axis=1), np.tile(np.arange(7), (5, 1)))
    np.testing.assert_allclose(distances, np.sort(1 - q @ db.T, axis=1), atol=1e-6)


def _synthetic(latent: np.ndarray) -> Embeddings:
    """Embeddings of made-up residues with the given latents."""
    n = len(latent)
    columns = {
        "structure_id": pa.array([f"s{i // 100}" for i in range(n)]),
        "source_path": pa.array([f"s{i // 100}.pdb" for i in range(n)]),
        "model": pa.array(np.ones(n, np.int32)),
        "chain": pa.array(["A"] * n),
        "residue_number": pa.array(np.arange(n, dtype=np.int32)),
        "insertion_code": pa.array([""] * n),
        "residue_name": pa.array(["ALA"] * n),
        "nonstandard": pa.array(np.zeros(n, bool)),
    }
    assert list(columns) == HIT_COLUMNS
    return Embeddings(pa.table(columns), latent, "synthetic", "0" * 64)


def test_auto_method_switches_to_hnsw_at_the_shipped_threshold(monkeypatch):
    """`holoprot index` (method auto, default threshold) builds a graph from EXACT_BELOW rows."""
    graphs: list[int] = []
    monkeypatch.setattr(hnsw, "build", lambda v, threads=None: graphs.append(len(v)) or object())
    latent = np.random.default_rng(0).normal(size=(EXACT_BELOW, 4)).astype(np.float32)
    assert Index.build(_synthetic(latent[:-1])).method == "exact" and graphs == []
    assert Index.build(_synthetic(latent)).method == "hnsw" and graphs == [EXACT_BELOW]


def test_hnsw_recall_at_10_against_exact():
    """Recall@10 of the HNSW graph at the shipped parameters (hnsw.PARAMETERS), on 15,000
    clustered 128-d unit vectors (100 Gaussian clusters, noise 1.3× the centres' spread, queries
    near data points): the index is built as `holoprot index` builds one above EXACT_BELOW rows
    (method auto, the threshold lowered to reach that path without a 50,000-row build).

    Measured (FAISS, 1 thread: deterministic): shipped M 16 / ef_construction 128 / ef_search 64
    0.974; ef_search 32 0.949, ef_search 10 0.805; M 8 0.952 (M 12 0.967); ef_construction 64
    0.961. The bar 0.965 fails each of those worse settings but M 12.
    """
    rng = np.random.default_rng(0)
    n, dim, clusters = 15_000, 128, 100
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    noise = 1.3 * rng.normal(size=(n, dim)).astype(np.float32)
    x = normalise(centres[rng.integers(0, clusters, n)] + noise)
    q = x[rng.choice(n, 500, replace=False)] + 0.1 * rng.normal(size=(500, dim))
    index = Index.build(_synthetic(x), threads=1, exact_below=10_000)
    assert index.method == "hnsw"
    graph = index._graph._index
    assert graph.hnsw.efSearch == hnsw.PARAMETERS["ef_search"]
    assert graph.hnsw.efConstruction == hnsw.PARAMETERS["ef_construction"]
    assert graph.hnsw.nb_neighbors(1) == hnsw.PARAMETERS["M"]
    _, truth = index.search_vectors(q, 10, exact=True)
    _, found = index.search_vectors(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found, strict=True)])
    assert recall >= 0.965, recall


@pytest.mark.parametrize("which", ["exact_index", "hnsw_index"])
def test_residue_finds_itself_first(which, request, embeddings):
    index: Index = request.getfixturevalue(which)
    query = query_table([f"{HVR}:A:25"], index.weights_name, index.weights_sha256, device="cpu")
    assert query.num_rows == 1
    hits = index.search(query, k=10).to_pydict()
    assert hits["rank"] == list(range(1, 11))
    assert hits["distance"][0] == pytest.approx(0.0, abs=1e-5)
    assert hits["distance"][1] > 1e-4
    assert (hits["structure_id"][0], hits["chain"][0], hits["residue_number"][0]) == (
        "1hvr",
        "A",
        25,
    )
    assert hits["residue_name"][0] == hits["query_residue_name"][0] == "ASP"


def _rotated_copy(path: Path, out: Path) -> Path:
    """`path` rotated and translated, written as mmCIF with the coordinates to 1e-9 Å (a PDB
    file would round them to 1e-3 Å, a perturbation of up to 5e-4 Å per atom that moves
    cosine distances by up to 1e-4: more than the rotation itself)."""
    st = gemmi.read_structure(str(path))
    rot = gemmi.Mat33([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
    st.setup_entities()
    moved = []
    for model in st:
        for chain in model:
            for residue in chain:
                for atom in residue:
                    p = rot.multiply(atom.pos)
                    moved.append((p.x + 12.5, p.y - 3.0, p.z + 40.0))
    block = st.make_mmcif_document().sole_block()
    for axis, name in enumerate("xyz"):
        column = block.find_values(f"_atom_site.Cartn_{name}")
        assert len(column) == len(moved)
        for i, xyz in enumerate(moved):
            column[i] = f"{xyz[axis]:.9f}"
    block.write_file(str(out))
    return out


def test_rotated_structure_returns_the_same_hits(tmp_path, hnsw_index):
    rotated = _rotated_copy(HVR, tmp_path / "1hvr_rotated.cif")
    index = hnsw_index
    queries = [f"{HVR}:A:25", f"{rotated}:A:25", f"{HVR}:B:50", f"{rotated}:B:50"]
    table = query_table(queries, index.weights_name, index.weights_sha256, device="cpu")
    hits = index.search(table, k=10).to_pandas()
    for original, turned in (queries[:2], queries[2:]):
        a = hits[hits["query"] == original]
        b = hits[hits["query"] == turned]
        key = ["structure_id", "chain", "residue_number", "insertion_code"]
        assert a[key].values.tolist() == b[key].values.tolist()
        # float32: the latents agree to their rounding, and each distance is 1 - q·x over 128
        # unit-vector components, whose rounding stays under 128·2⁻²⁴ ≈ 7.6e-6. Measured: 2.4e-7
        # (2 ulps of 1.0). A 5e-4 Å perturbation of the atoms (writing the copy as PDB) gives
        # 9e-5, ten times this bound; the former bound, 2e-3, let that through.
        np.testing.assert_allclose(a["distance"], b["distance"], rtol=0, atol=1e-5)


def test_parse_query(tmp_path):
    assert parse_query(str(MMCIF)) == parse_query(str(MMCIF))
    q = parse_query(f"{MMCIF}:A:45A")
    assert (q.path, q.chain, q.residue_number, q.insertion_code) == (MMCIF, "A", 45, "A")
    q = parse_query(f"{MMCIF}:B:-3")
    assert (q.chain, q.residue_number, q.insertion_code) == ("B", -3, "")
    q = parse_query(f"{MMCIF}:B")
    assert (q.chain, q.residue_number) == ("B", None)
    odd = tmp_path / "odd:name.pdb"
    shutil.copy(HVR, odd)
    assert parse_query(f"{odd}:A:1").path == odd
    with pytest.raises(HoloprotError, match="bad residue selector"):
        parse_query(f"{MMCIF}:A:4x5")
    with pytest.raises(HoloprotError, match="no such file"):
        parse_query("missing.pdb:A:1")


def test_insertion_code_and_chain_queries(exact_index):
    index = exact_index
    sha = index.weights_sha256
    table = query_table([f"{MMCIF}:A:184A"], index.weights_name, sha, device="cpu")
    assert table.column("insertion_code").to_pylist() == ["A"]
    assert table.column("residue_number").to_pylist() == [184]
    chain = query_table([f"{HVR}:B"], index.weights_name, sha, device="cpu")
    assert set(chain.column("chain").to_pylist()) == {"B"}
    assert chain.num_rows == 99
    with pytest.raises(HoloprotError, match="no such residue"):
        query_table([f"{HVR}:A:999"], index.weights_name, sha, device="cpu")


def test_save_load_round_trip(tmp_path, exact_index, hnsw_index):
    q = np.random.default_rng(3).normal(size=(20, exact_index.dim))
    for index in (exact_index, hnsw_index):
        folder = index.save(tmp_path / index.method)
        loaded = Index.load(folder)
        assert (loaded.method, len(loaded), loaded.weights_sha256) == (
            index.method,
            len(index),
            index.weights_sha256,
        )
        d0, r0 = index.search_vectors(q, 10)
        d1, r1 = loaded.search_vectors(q, 10)
        np.testing.assert_array_equal(r0, r1)
        np.testing.assert_array_equal(d0, d1)
        meta = json.loads((folder / "index.json").read_text())
        assert meta["format"] == "holoprot-index" and meta["format_version"] == 1
        assert meta["metric"] == "cosine"


def test_tampered_or_mismatched_index_is_refused(tmp_path, exact_index, hnsw_index):
    for index in (exact_index, hnsw_index):
        folder = index.save(tmp_path / index.method)
        data = "vectors.npy" if index.method == "exact" else "hnsw.faiss"
        raw = bytearray((folder / data).read_bytes())
        raw[-5] ^= 0xFF
        (folder / data).write_bytes(bytes(raw))
        with pytest.raises(HoloprotError, match="sha256 does not match"):
            Index.load(folder)
    folder = exact_index.save(tmp_path / "v")
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(HoloprotError, match="format version 99"):
        Index.load(folder)
    (folder / "index.json").write_text(json.dumps(seal({**meta, "rows": 3})))  # sealed anew
    with pytest.raises(HoloprotError, match="rows.parquet: does not match index.json"):
        Index.load(folder)
    (folder / "index.json").unlink()
    with pytest.raises(HoloprotError, match="no index.json"):
        Index.load(folder)


@pytest.mark.parametrize("edit", ["weights_sha256", "unsealed"])
def test_edited_index_json_is_refused_in_one_line(tmp_path, exact_index, edit):
    """index.json is sealed: its weights_sha256 decides which query latents are accepted, so an
    edited one (or an index.json without its seal) is refused on loading, in one line."""
    folder = exact_index.save(tmp_path / "idx")
    meta = json.loads((folder / "index.json").read_text())
    if edit == "weights_sha256":
        meta["weights_sha256"] = "0" * 64
        problem = "metadata_sha256 does not match its content"
    else:
        del meta["metadata_sha256"]
        problem = "no metadata_sha256"
    (folder / "index.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(HoloprotError, match=problem):
        Index.load(folder)
    result = CliRunner().invoke(app, ["search", f"{HVR}:A:25", "--index", str(folder)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {folder / 'index.json'}: {problem}"), lines[0]


def test_index_of_a_dataset_folder_holds_only_its_committed_rows(tmp_path, embeddings):
    """A killed `holoprot embed --resume` leaves staged parts in DIR/_temporary/ (a file output:
    OUT.parquet.partial/); `holoprot index DIR` indexes the dataset's committed parts only."""
    table = pq.read_table(embeddings)
    folder = tmp_path / "emb"
    assert write_tables([table], folder, table.schema) == table.num_rows
    (folder / STAGING_DIR).mkdir()
    shutil.copy(folder / "part-000000.parquet", folder / STAGING_DIR / "part-000001.parquet")
    assert len(Index.build(folder, method="exact")) == table.num_rows
    result = CliRunner().invoke(app, ["index", str(folder), "-o", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert f"indexed {table.num_rows} residues" in result.output
    files = tmp_path / "files"  # a folder of embedding files, one of them unfinished
    (files / "b.parquet.partial").mkdir(parents=True)
    shutil.copy(embeddings, files / "a.parquet")
    shutil.copy(embeddings, files / "b.parquet.partial" / "part-000000.parquet")
    assert len(Index.build(files, method="exact")) == table.num_rows
    unfinished = tmp_path / "unfinished"  # killed in its first commit: no dataset manifest yet
    (unfinished / STAGING_DIR).mkdir(parents=True)
    shutil.copy(folder / "part-000000.parquet", unfinished / "part-000000.parquet")
    with pytest.raises(HoloprotError, match="holds an unfinished run"):
        Index.build(unfinished, method="exact")


def test_other_weights_are_refused(embeddings, exact_index, tmp_path):
    other = tmp_path / "other.parquet"
    table = pq.read_table(embeddings)
    meta = dict(table.schema.metadata)
    meta[b"weights_sha256"] = json.dumps("0" * 64).encode()
    pq.write_table(table.replace_schema_metadata(meta), other)
    with pytest.raises(HoloprotError, match="embed them with the index's weights"):
        exact_index.search(pq.read_table(other), k=3)
    with pytest.raises(HoloprotError, match="other weights"):
        query_table([f"{other}:A:25"], exact_index.weights_name, exact_index.weights_sha256)
    with pytest.raises(HoloprotError, match="weights"):
        Index.build([embeddings, other])


def test_cli_index_and_search(tmp_path, embeddings):
    runner = CliRunner()
    folder = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(embeddings), "-o", str(folder)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "hits.csv"
    result = runner.invoke(
        app,
        [
            "search",
            f"{HVR}:A:25",
            "--index",
            str(folder),
            "-k",
            "5",
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    hits = pd.read_csv(out)
    assert len(hits) == 5 and hits["rank"].tolist() == [1, 2, 3, 4, 5]
    assert hits.loc[0, "residue_number"] == 25 and hits.loc[0, "distance"] < 1e-5
    result = runner.invoke(app, ["search", str(embeddings) + ":B:50", "--index", str(folder)])
    assert result.exit_code == 0, result.output
    assert "1hvr" in result.output
    again = runner.invoke(app, ["search", f"{HVR}:A:25", "--index", str(folder), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output
    again = runner.invoke(app, ["index", str(embeddings), "-o", str(folder)])
    assert again.exit_code == 1 and "already holds an index" in again.output
    (folder / "rows.parquet").write_bytes(b"garbage")
    result = runner.invoke(app, ["search", f"{HVR}:A:25", "--index", str(folder)])
    assert result.exit_code == 1
    assert "sha256 does not match" in result.output
