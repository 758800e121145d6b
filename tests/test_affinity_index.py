"""PDBbind index parsing on real index lines (PDBbind v2020 INDEX_general_PL_data and
INDEX_refined_data, CASF-2016 CoreSet.dat; each data line below is copied from those files)."""

from __future__ import annotations

import math

import pytest

from holoprot.affinity.index import (
    find_index_files,
    parse_affinity,
    read_core_ids,
    read_index,
    read_labels,
)
from holoprot.errors import InputError

GENERAL = """\
# ==============================================================================
# List of protein-ligand complexes with known binding data in PDBbind v.2020
# 19443 protein-ligand complexes in total, sorted by binding data
# Latest update: July 2021
# PDB code, resolution, release year, -logKd/Ki, Kd/Ki, reference, ligand name
# ==============================================================================
3zzf  2.20  2012   0.40  Ki=400mM      // 3zzf.pdf (NLG)
4fci  1.82  2012   1.26  Ki~55mM       // 4fci.pdf (GPA)
2fah  2.09  2006   1.30  Ki>50mM       // 2fah.pdf (MLA)
1o4l  1.65  2004   1.40  IC50>40mM     // 1o4l.pdf (CIT)
3oay  1.95  2011   1.70  IC50~20mM     // 3oay.pdf (BDF)
1czo  1.85  1999   4.55  Kd=28uM       // 1czo.pdf (FMN hq)
5oxm  2.30  2018   1.30  Kd>50mM       // 5oxk.pdf (2-mer)
1hvr  1.80  1995   9.51  Ki=0.31nM     // 1hvr.pdf (XK2)
1avd  2.70  1994  15.00  Kd=1fM        // 1avd.pdf (BTN)
2avi  3.00  1993  15.22  Kd=0.6fM      // 2avi.pdf (BTN)
"""

CORE = """\
#code   resl     year    logKa    Ka           target
4llx    1.75     2014    2.89     Ki=1300uM    1
5c2h    2.09     2015   11.09     Ki=8.2pM     1
2v00    1.55     2007    3.66     Kd=0.22mM    2
"""

REFINED = """\
# PDB code, resolution, release year, -logKd/Ki, Kd/Ki, reference, ligand name
2r58  2.00  2007   2.00  Kd=10mM       // 2r58.pdf (MLY)
1hvr  1.80  1995   9.51  Ki=0.31nM     // 1hvr.pdf (XK2)
"""


@pytest.fixture
def index_dir(tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "INDEX_general_PL_data.2020").write_text(GENERAL)
    (tmp_path / "index" / "INDEX_refined_data.2020").write_text(REFINED)
    (tmp_path / "index" / "CoreSet.dat").write_text(CORE)
    (tmp_path / "index" / "README.txt").write_text("not an index")
    return tmp_path


@pytest.mark.parametrize(
    "text, measure, qualifier, value",
    [
        ("Ki=400mM", "Ki", "=", -math.log10(0.4)),
        ("Kd=28uM", "Kd", "=", -math.log10(28e-6)),
        ("Ki=0.31nM", "Ki", "=", -math.log10(0.31e-9)),
        ("Ki=8.2pM", "Ki", "=", -math.log10(8.2e-12)),
        ("Kd=0.6fM", "Kd", "=", -math.log10(0.6e-15)),
        ("Ki~55mM", "Ki", "~", -math.log10(55e-3)),
        ("IC50>40mM", "IC50", ">", -math.log10(40e-3)),
        ("Kd<=5nM", "Kd", "<=", -math.log10(5e-9)),
        ("IC50>=1.5uM", "IC50", ">=", -math.log10(1.5e-6)),
        ("Kd=2M", "Kd", "=", -math.log10(2.0)),
    ],
)
def test_parse_affinity_units_and_qualifiers(text, measure, qualifier, value):
    assert parse_affinity(text) == (measure, qualifier, pytest.approx(value, abs=1e-12))


@pytest.mark.parametrize("text", ["Ka=5nM", "Ki=5", "Ki=5kM", "Ki==5nM", "Ki=-5nM", "Ki=0nM", ""])
def test_parse_affinity_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_affinity(text)


def test_read_index_real_lines_agree_with_the_files_own_column(tmp_path):
    path = tmp_path / "INDEX_general_PL_data.2020"
    path.write_text(GENERAL)
    frame = read_index(path)
    assert list(frame["id"]) == [
        "3zzf",
        "4fci",
        "2fah",
        "1o4l",
        "3oay",
        "1czo",
        "5oxm",
        "1hvr",
        "1avd",
        "2avi",
    ]
    # the index's −log column is the same value rounded to 2 decimals
    assert (frame["neglog_affinity"] - frame["index_value"]).abs().max() <= 0.005 + 1e-9
    row = frame.set_index("id").loc["1czo"]  # ligand name with a space
    assert (row["measure"], row["qualifier"], row["affinity"]) == ("Kd", "=", "Kd=28uM")
    assert frame.set_index("id").loc["1o4l", "measure"] == "IC50"
    assert frame["casf_cluster"].isna().all()


def test_core_set_lines_carry_their_cluster(tmp_path):
    path = tmp_path / "CoreSet.dat"
    path.write_text(CORE)
    frame = read_index(path).set_index("id")
    assert list(frame["casf_cluster"]) == [1, 1, 2]
    assert frame.loc["5c2h", "neglog_affinity"] == pytest.approx(-math.log10(8.2e-12))
    assert read_core_ids([path]) == ["2v00", "4llx", "5c2h"]


def test_qualifier_policy_drops_inequalities_keeps_approximate(index_dir):
    files = find_index_files(index_dir)
    assert [f.name for f in files] == [
        "CoreSet.dat",
        "INDEX_general_PL_data.2020",
        "INDEX_refined_data.2020",
    ]
    labels, rejected = read_labels(files)
    assert {"3zzf", "4fci", "3oay", "1hvr", "4llx", "2r58"} <= set(labels.index)  # = and ~ kept
    assert set(rejected.index) == {"2fah", "1o4l", "5oxm"}  # <, > dropped and reported
    assert rejected.loc["2fah", "reason"] == "censored label Ki>50mM"
    assert labels.loc["4llx", "casf_cluster"] == 1
    kept, none_rejected = read_labels(files, keep_inequalities=True)
    assert none_rejected.empty
    assert kept.loc["2fah", "neglog_affinity"] == pytest.approx(-math.log10(50e-3))


def test_measure_filter_flags_ic50(index_dir):
    labels, rejected = read_labels(find_index_files(index_dir), measures=("Kd", "Ki"))
    assert "3oay" not in labels.index
    assert rejected.loc["3oay", "reason"] == "measure IC50 excluded"
    assert set(labels["measure"]) == {"Kd", "Ki"}


def test_first_file_wins_on_shared_ids(tmp_path):
    first, second = tmp_path / "INDEX_a", tmp_path / "INDEX_b"
    first.write_text("1hvr  1.80  1995   9.51  Ki=0.31nM     // 1hvr.pdf (XK2)\n")
    second.write_text("1hvr  1.80  1995   8.00  Ki=10nM     // 1hvr.pdf (XK2)\n")
    labels, _ = read_labels([first, second])
    assert labels.loc["1hvr", "source"] == "INDEX_a"


@pytest.mark.parametrize(
    "line, problem",
    [
        ("1hvr  1.80  1995   9.51  Ki=0.31nM\n", "line 2"),
        ("1hvr  1.80  1995   9.51  Kx=0.31nM     // 1hvr.pdf (XK2)\n", "unrecognised affinity"),
        ("hello world this is not an index line\n", "line 2"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "INDEX_bad"
    path.write_text("# header\n" + line)
    with pytest.raises(InputError, match=problem) as info:
        read_index(path)
    assert str(path) in str(info.value)


def test_empty_or_missing_index_is_an_input_error(tmp_path):
    (tmp_path / "INDEX_empty").write_text("# only comments\n\n")
    with pytest.raises(InputError, match="no affinity lines"):
        read_index(tmp_path / "INDEX_empty")
    with pytest.raises(InputError, match="cannot read"):
        read_index(tmp_path / "INDEX_missing")
