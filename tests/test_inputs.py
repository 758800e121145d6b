"""holoprot.io.inputs.expand_inputs: files, folders, globs, @lists, order, duplicates, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from holoprot.errors import InputError
from holoprot.io.inputs import STRUCTURE_SUFFIXES, expand_inputs, is_structure_file


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """b.pdb a.cif.gz notes.txt sub/{c.ent, d.mmcif, e.PDB, deep/f.pdb.gz} empty/ other/x.txt"""
    for rel in [
        "b.pdb",
        "a.cif.gz",
        "notes.txt",
        "sub/c.ent",
        "sub/d.mmcif",
        "sub/e.PDB",
        "sub/deep/f.pdb.gz",
        "other/x.txt",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "empty").mkdir()
    return tmp_path


def _names(paths: list[Path], root: Path) -> list[str]:
    return [p.resolve().relative_to(root.resolve()).as_posix() for p in paths]


def test_suffixes():
    assert set(STRUCTURE_SUFFIXES) == {
        ".pdb",
        ".ent",
        ".cif",
        ".mmcif",
        ".pdb.gz",
        ".ent.gz",
        ".cif.gz",
        ".mmcif.gz",
    }
    assert is_structure_file("X.CIF.GZ") and not is_structure_file("x.gz")


def test_directory_recursive_sorted_structures_only(tree):
    got = _names(expand_inputs([str(tree)]), tree)
    assert got == [
        "a.cif.gz",
        "b.pdb",
        "sub/c.ent",
        "sub/d.mmcif",
        "sub/deep/f.pdb.gz",
        "sub/e.PDB",
    ]


def test_directory_not_recursive(tree):
    assert _names(expand_inputs([str(tree)], recursive=False), tree) == ["a.cif.gz", "b.pdb"]


def test_order_as_given_and_duplicates_removed(tree):
    items = [str(tree / "sub"), str(tree / "b.pdb"), str(tree / "sub/c.ent"), str(tree)]
    got = _names(expand_inputs(items), tree)
    assert got == [
        "sub/c.ent",
        "sub/d.mmcif",
        "sub/deep/f.pdb.gz",
        "sub/e.PDB",
        "b.pdb",
        "a.cif.gz",
    ]


def test_explicit_file_with_any_name_is_kept(tree):
    assert _names(expand_inputs([str(tree / "notes.txt")]), tree) == ["notes.txt"]


def test_globs(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert [p.as_posix() for p in expand_inputs(["sub/*.ent"])] == ["sub/c.ent"]
    assert _names(expand_inputs(["**/*.gz"]), tree) == ["a.cif.gz", "sub/deep/f.pdb.gz"]
    assert _names(expand_inputs(["sub/*"]), tree) == ["sub/c.ent", "sub/d.mmcif", "sub/e.PDB"]


def test_list_file_relative_to_its_folder(tree, tmp_path_factory, monkeypatch):
    lists = tree / "lists"
    lists.mkdir()
    (lists / "in.txt").write_text(
        "# my inputs\n\n../b.pdb\n  ../sub/*.mmcif  \n# ../a.cif.gz\n"
        f"{tree / 'sub' / 'deep'}\n../b.pdb\n"
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    got = _names(expand_inputs([f"@{lists / 'in.txt'}", str(tree / "a.cif.gz")]), tree)
    assert got == ["b.pdb", "sub/d.mmcif", "sub/deep/f.pdb.gz", "a.cif.gz"]


def test_relative_list_path(tree, monkeypatch):
    (tree / "sub" / "l.txt").write_text("c.ent\n")
    monkeypatch.chdir(tree)
    assert _names(expand_inputs(["@sub/l.txt"]), tree) == ["sub/c.ent"]


def _error(items: list[str], match: str) -> str:
    with pytest.raises(InputError, match=match) as err:
        expand_inputs(items)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_path(tree):
    message = _error([str(tree / "b.pdb"), str(tree / "missing.pdb")], "no such file")
    assert message.startswith(str(tree / "missing.pdb"))


def test_glob_matching_nothing(tree):
    pattern = str(tree / "*.mmcif.gz")
    assert _error([pattern], "matches no file").startswith(pattern)


def test_directory_without_structures(tree):
    _error([str(tree / "empty")], "no structure files")
    _error([str(tree / "other")], "no structure files")


def test_list_errors(tree):
    _error([f"@{tree / 'nolist.txt'}"], "cannot read list file")
    (tree / "blank.txt").write_text("\n# only a comment\n   \n")
    _error([f"@{tree / 'blank.txt'}"], "names no path")
    (tree / "bad.txt").write_text("b.pdb\nnot_there.cif\n")
    message = _error([f"@{tree / 'bad.txt'}"], "no such file")
    assert "line 2 'not_there.cif'" in message
    (tree / "nested.txt").write_text("@bad.txt\n")
    _error([f"@{tree / 'nested.txt'}"], "nested list")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_list(tree):
    path = tree / "locked.txt"
    path.write_text("b.pdb\n")
    path.chmod(0)
    try:
        _error([f"@{path}"], "cannot read list file")
    finally:
        path.chmod(0o644)
