"""Affinity labels from PDBbind index files (`INDEX_*_data.20xx`) and CASF `CoreSet.dat`.

Label: −log10 of the affinity in mol/L (pKd, pKi or pIC50), computed from the affinity string
(`Kd=0.31nM` → 9.51); the index's own rounded −log column is kept as `index_value` for checking.

Qualifier policy (column `qualifier`):

* `=` exact: kept.
* `~` approximate: kept as the stated value (PDBbind puts these in its refined set too).
* `<`, `>`, `<=`, `>=` censored bounds: dropped by default, since treating a bound as a measurement
  biases the label; `keep_inequalities=True` keeps them at the bound. Dropped ids are reported by
  the caller, never discarded silently.

Measures (column `measure`): `Kd`, `Ki` or `IC50`; IC50 values are kept by default (PDBbind's
general set includes them, its refined and core sets do not) and can be filtered with `measures=`.
Comment lines start with `#`; blank lines are skipped; any other line that does not parse is an
error naming the file and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from holoprot.errors import InputError

MEASURES = ("Kd", "Ki", "IC50")
EXACT_QUALIFIERS = ("=", "~")
UNIT_MOLAR = {"fM": 1e-15, "pM": 1e-12, "nM": 1e-9, "uM": 1e-6, "mM": 1e-3, "M": 1.0}
COLUMNS = [
    "id",
    "neglog_affinity",
    "measure",
    "qualifier",
    "affinity",
    "index_value",
    "casf_cluster",
    "source",
]

_AFFINITY = re.compile(
    r"^(?P<measure>Kd|Ki|IC50)(?P<qualifier><=|>=|=|<|>|~)"
    r"(?P<value>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)(?P<unit>fM|pM|nM|uM|mM|M)$"
)
_PDB_ID = re.compile(r"^[0-9][0-9a-zA-Z]{3}$")


def parse_affinity(text: str) -> tuple[str, str, float]:
    """Split `Kd=0.31nM` into (measure, qualifier, −log10 molar), e.g. ("Kd", "=", 9.5086).

    Raises:
        ValueError: the text is not `<Kd|Ki|IC50><qualifier><number><fM|pM|nM|uM|mM|M>`.
    """
    match = _AFFINITY.match(text.strip())
    if match is None:
        raise ValueError(f"unrecognised affinity {text!r}")
    molar = float(match["value"]) * UNIT_MOLAR[match["unit"]]
    if molar <= 0.0:
        raise ValueError(f"non-positive affinity {text!r}")
    return match["measure"], match["qualifier"], -math.log10(molar)


def _parse_line(tokens: list[str]) -> tuple[str, float, str, int | None]:
    """(id, index −log value, affinity text, CASF cluster or None) from one data line's tokens."""
    if len(tokens) < 5 or not _PDB_ID.match(tokens[0]):
        raise ValueError("expected 'PDB-code resolution year -logK affinity ...'")
    index_value = float(tokens[3])
    if len(tokens) >= 6 and tokens[5] == "//":
        return tokens[0].lower(), index_value, tokens[4], None
    if len(tokens) == 6 and tokens[5].isdigit():  # CoreSet.dat: ... logKa Ka target
        return tokens[0].lower(), index_value, tokens[4], int(tokens[5])
    raise ValueError("neither an INDEX line ('... // reference (ligand)') nor a CoreSet.dat line")


def read_index(path: str | Path) -> pd.DataFrame:
    """All labelled lines of one PDBbind index or CoreSet.dat file, censored ones included.

    Returns:
        One row per line with columns `COLUMNS`: `neglog_affinity` (−log10 M, from the affinity
        string), `index_value` (the file's rounded −log column), `casf_cluster` (CoreSet.dat target
        cluster, else NA), `source` (the file name).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read index file ({exc.strerror or exc})") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            pdb_id, index_value, text, cluster = _parse_line(stripped.split())
            measure, qualifier, neglog = parse_affinity(text)
        except ValueError as exc:
            raise InputError(path, f"line {number}: {exc}") from None
        rows.append((pdb_id, neglog, measure, qualifier, text, index_value, cluster, path.name))
    if not rows:
        raise InputError(path, "holds no affinity lines")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["casf_cluster"] = frame["casf_cluster"].astype("Int64")
    return frame


def is_index_file(path: str | Path) -> bool:
    """Whether a file name is a PDBbind index (`INDEX_*`) or a CASF core set (`CoreSet*`)."""
    name = Path(path).name
    return name.startswith("INDEX_") or name.lower().startswith("coreset")


def find_index_files(root: str | Path) -> list[Path]:
    """Index files in `root` and `root/index`: `INDEX_*` and CoreSet files, sorted by name."""
    found: list[Path] = []
    for folder in (Path(root), Path(root) / "index"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_index_file(path):
                found.append(path)
    return found


def read_labels(
    paths: Sequence[str | Path],
    *,
    keep_inequalities: bool = False,
    measures: Iterable[str] = MEASURES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels merged from several index files, one row per id.

    Where an id appears in several files, the first file listed wins (PDBbind's general, refined
    and core files agree on shared ids). `casf_cluster` is filled from any core-set file.

    Returns:
        (labels, rejected): `labels` indexed by id with the columns of `read_index`; `rejected`
        the rows dropped by the qualifier or measure policy, with a `reason` column.
    """
    if not paths:
        raise InputError("--index", "no index files given or found")
    measures = tuple(measures)
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise InputError("--measures", f"unknown measure(s) {', '.join(unknown)}")
    frame = pd.concat([read_index(p) for p in paths], ignore_index=True)
    clusters = frame.dropna(subset=["casf_cluster"]).drop_duplicates("id").set_index("id")
    frame = frame.drop_duplicates("id", keep="first").set_index("id")
    frame["casf_cluster"] = clusters["casf_cluster"].reindex(frame.index).astype("Int64")
    censored = ~frame["qualifier"].isin(EXACT_QUALIFIERS)
    reason = pd.Series("", index=frame.index)
    if not keep_inequalities:
        reason[censored] = "censored label " + frame.loc[censored, "affinity"]
    wrong_measure = ~frame["measure"].isin(measures) & (reason == "")
    reason[wrong_measure] = "measure " + frame.loc[wrong_measure, "measure"] + " excluded"
    rejected = frame[reason != ""].assign(reason=reason[reason != ""])
    return frame[reason == ""], rejected


def read_core_ids(paths: Sequence[str | Path]) -> list[str]:
    """Ids of the CASF core-set lines (those with a target cluster) in `paths`, sorted."""
    ids: set[str] = set()
    for path in paths:
        frame = read_index(path)
        ids.update(frame.loc[frame["casf_cluster"].notna(), "id"])
    return sorted(ids)
