"""GTID arithmetic, both formats, as tables."""
from __future__ import annotations

import pytest

from triton_mysql.mysql import gtid
from triton_mysql.mysql.flavor import MARIADB as MARIADB_FLAVOR
from triton_mysql.mysql.gtid import GtidError

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4d22ab58-82db-22f2-8f44-d91bb0530673"


# -- parsing / formatting ------------------------------------------------------------

@pytest.mark.parametrize("text, parsed, canonical", [
    ("", [], ""),
    (None, [], ""),
    ("0-1-100", [(0, 1, 100)], "0-1-100"),
    ("0-1-100,1-2-5", [(0, 1, 100), (1, 2, 5)], "0-1-100,1-2-5"),
    (" 1-2-5,\n 0-1-100 ", [(1, 2, 5), (0, 1, 100)], "0-1-100,1-2-5"),
    ("0-3-120,0-1-100", [(0, 3, 120), (0, 1, 100)], "0-1-100,0-3-120"),
    ("0-5-7,0-1-100", [(0, 5, 7), (0, 1, 100)], "0-5-7,0-1-100"),  # highest seq last in a domain
    ("0-1-100,", [(0, 1, 100)], "0-1-100"),
])
def test_mariadb_parse_and_format(text, parsed, canonical):
    assert gtid.parse_mariadb(text) == parsed
    assert gtid.normalize("mariadb", text) == canonical


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "0:1:2", f"{U1}:1-5"])
def test_mariadb_rejects_malformed(bad):
    with pytest.raises(GtidError):
        gtid.parse_mariadb(bad)


@pytest.mark.parametrize("text, canonical", [
    ("", ""),
    (f"{U1}:1-5", f"{U1}:1-5"),
    (f"{U1}:1-5:7-9", f"{U1}:1-5:7-9"),
    (f"{U1}:7-9:1-5", f"{U1}:1-5:7-9"),
    (f"{U1}:1-5:6-9", f"{U1}:1-9"),
    (f"{U1}:1-5:3-7:9", f"{U1}:1-7:9"),
    (f"{U2}:1-3,{U1}:1-5", f"{U1}:1-5,{U2}:1-3"),
    (f"{U1}:1-5,\n{U2}:1-3", f"{U1}:1-5,{U2}:1-3"),
    (f"{U1.upper()}:1-2", f"{U1}:1-2"),
    (f"{U1}:1-2,{U1}:3-4", f"{U1}:1-4"),
    (f"{U1}:1-5:tag_a:1-3", f"{U1}:1-5:tag_a:1-3"),
    (U1.replace("-", "") + ":4", f"{U1}:4"),
])
def test_mysql_parse_and_format(text, canonical):
    assert gtid.normalize("mysql", text) == canonical


@pytest.mark.parametrize("bad", [f"{U1}", f"{U1}:0-3", f"{U1}:5-3", "nouuid:1-5", f"{U1}:1-x-2", "0-1-100"])
def test_mysql_rejects_malformed(bad):
    with pytest.raises(GtidError):
        gtid.parse_mysql(bad)


def test_unknown_flavor_is_an_error():
    with pytest.raises(GtidError):
        gtid.normalize("postgres", "")


def test_flavor_objects_are_accepted():
    assert gtid.normalize(MARIADB_FLAVOR, "1-1-1,0-1-1") == "0-1-1,1-1-1"


# -- extra -------------------------------------------------------------------------------

@pytest.mark.parametrize("mine, primary, expected", [
    ("", "", ""),
    ("", "0-1-100", ""),
    ("0-1-100", "0-1-100", ""),
    ("0-1-90", "0-1-100", ""),                       # behind is not errant
    ("0-1-100,0-3-101", "0-1-100", "0-3-101"),       # a write on a replica with read_only off
    ("0-1-101", "0-1-100,0-2-150", "0-1-101"),       # old primary's in-flight write after failover
    ("0-2-50,0-1-100", "0-1-100,0-2-50", ""),        # same history, other order
    ("0-1-100,1-4-3", "0-1-200", "1-4-3"),           # a domain the primary never had
    ("0-2-50,0-1-100", "0-1-100,0-4-130", ""),       # primary's state seeded from a snapshot position
    ("0-2-50,0-1-100,0-3-101", "0-1-100,0-4-130", "0-3-101"),
    ("0-1-100,1-1-7", "0-1-100,1-1-7,1-2-9", ""),
    ("0-1-100,1-1-8", "0-1-100,1-1-7", "1-1-8"),
])
def test_mariadb_extra(mine, primary, expected):
    assert gtid.extra("mariadb", mine, primary) == expected


@pytest.mark.parametrize("mine, primary, expected", [
    ("", "", ""),
    (f"{U1}:1-5", f"{U1}:1-10", ""),
    (f"{U1}:1-10", f"{U1}:1-5", f"{U1}:6-10"),
    (f"{U1}:1-10,{U2}:1", f"{U1}:1-10", f"{U2}:1"),
    (f"{U1}:1-10", f"{U1}:1-3:5-7:9", f"{U1}:4:8:10"),
    (f"{U1}:1-3:tag_x:1-2", f"{U1}:1-3", f"{U1}:tag_x:1-2"),
    (f"{U1}:1-3", f"{U1}:1-3,\n{U2}:1-9", ""),
])
def test_mysql_extra(mine, primary, expected):
    assert gtid.extra("mysql", mine, primary) == expected


# -- contains ----------------------------------------------------------------------------

@pytest.mark.parametrize("have, want, expected", [
    ("", "", True),
    ("0-1-100", "", True),
    ("", "0-1-1", False),
    ("0-1-100", "0-1-100", True),
    ("0-2-101", "0-1-100", True),                # per-domain seq_no
    ("0-1-99", "0-1-100", False),
    ("0-1-100,1-2-5", "1-2-5", True),
    ("0-1-100", "0-1-100,1-2-5", False),
])
def test_mariadb_contains(have, want, expected):
    assert gtid.contains("mariadb", have, want) is expected


@pytest.mark.parametrize("have, want, expected", [
    ("", "", True),
    (f"{U1}:1-10", f"{U1}:3-7", True),
    (f"{U1}:1-10", f"{U1}:3-11", False),
    (f"{U1}:1-5:7-10", f"{U1}:1-10", False),
    (f"{U1}:1-10,{U2}:1-2", f"{U2}:2", True),
    (f"{U1}:1-10", f"{U2}:1", False),
])
def test_mysql_contains(have, want, expected):
    assert gtid.contains("mysql", have, want) is expected


# -- merge ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flavor, a, b, expected", [
    ("mariadb", "", "", ""),
    ("mariadb", "0-1-100", "", "0-1-100"),
    ("mariadb", "0-1-100", "0-1-120", "0-1-120"),
    ("mariadb", "0-1-120", "0-1-100", "0-1-120"),
    ("mariadb", "0-1-100,1-2-5", "0-3-101", "0-3-101,1-2-5"),
    ("mysql", f"{U1}:1-5", f"{U1}:6-9", f"{U1}:1-9"),
    ("mysql", f"{U1}:1-5", f"{U2}:1-2", f"{U1}:1-5,{U2}:1-2"),
    ("mysql", f"{U1}:1-5:9", f"{U1}:3-7", f"{U1}:1-7:9"),
    ("mysql", "", f"{U1}:1", f"{U1}:1"),
])
def test_merge(flavor, a, b, expected):
    assert gtid.merge(flavor, a, b) == expected


# -- progress ------------------------------------------------------------------------------

@pytest.mark.parametrize("flavor, value, expected", [
    ("mariadb", "", 0),
    ("mariadb", "0-1-100", 100),
    ("mariadb", "0-1-100,1-2-5", 105),
    ("mariadb", "0-1-100,0-2-130", 130),  # a state: the domain's highest seq_no counts
    ("mysql", "", 0),
    ("mysql", f"{U1}:1-5", 5),
    ("mysql", f"{U1}:1-5:7-9,{U2}:1-3", 11),
])
def test_progress(flavor, value, expected):
    assert gtid.progress(flavor, value) == expected


def test_progress_ranks_the_most_advanced_first():
    nodes = {"a": "0-1-100", "b": "0-1-120", "c": "0-1-110"}
    assert max(nodes, key=lambda n: gtid.progress("mariadb", nodes[n])) == "b"
    sets = {"a": f"{U1}:1-100", "b": f"{U1}:1-99,{U2}:1-3", "c": f"{U1}:1-50"}
    assert max(sets, key=lambda n: gtid.progress("mysql", sets[n])) == "b"


def test_is_empty():
    assert gtid.is_empty("mariadb", " \n") and not gtid.is_empty("mariadb", "0-1-1")
    assert gtid.is_empty("mysql", "") and not gtid.is_empty("mysql", f"{U1}:1")


# -- classify: errant / own tail / ahead, by origin (SPEC §5) ----------------------------

@pytest.mark.parametrize("case, mine, primary, own, terms, tolerate, expected", [
    ("nothing extra", "0-1-100,0-2-50", "0-1-100,0-2-50", "2", [], None, ("", "", "")),
    ("a write as a replica, never primary", "0-1-100,0-3-101", "0-1-100", "3", [], None, ("0-3-101", "", "")),
    ("own write inside an open term: lost tail", "0-1-100,0-3-105", "0-1-100,0-2-103", "3",
     [("0-1-100", None)], None, ("", "0-3-105", "")),
    ("own write after the term closed: errant", "0-1-100,0-3-110", "0-1-100,0-2-120", "3",
     [("0-1-90", "0-1-90,0-3-105")], None, ("0-3-110", "", "")),
    ("own write inside a closed term: tail", "0-1-100,0-3-105", "0-1-100,0-2-120", "3",
     [("0-1-100", "0-1-100,0-3-105")], None, ("", "0-3-105", "")),
    ("a former primary's transactions: ahead", "0-1-130", "0-1-100,0-2-120", "3", [], None, ("", "", "0-1-130")),
    ("the last primary's own newer writes: tolerated", "0-1-130", "0-1-120", "3", [], "1", ("", "", "")),
    ("tolerated origin does not hide others", "0-1-130,0-4-140", "0-1-120", "3", [], "1", ("", "", "0-4-140")),
    ("the bootstrap term covers the first writes", "0-3-4", "", "3", [("", None)], None, ("", "0-3-4", "")),
])
def test_mariadb_classify(case, mine, primary, own, terms, tolerate, expected):
    got = gtid.classify("mariadb", mine, primary, own=own, terms=terms, tolerate=tolerate)
    assert (got.errant, got.tail, got.ahead) == expected, case
    assert bool(got) == any(expected)


@pytest.mark.parametrize("case, mine, primary, terms, expected", [
    ("own writes outside a term", f"{U1}:1-10,{U2}:1-3", f"{U1}:1-10", [], (f"{U2}:1-3", "", "")),
    ("own writes in an open term", f"{U1}:1-10,{U2}:1-5", f"{U1}:1-10,{U2}:1-2", [(f"{U1}:1-10,{U2}:1-2", None)],
     ("", f"{U2}:3-5", "")),
    ("a closed term, then an errant write", f"{U1}:1-10,{U2}:1-6", f"{U1}:1-10",
     [(f"{U1}:1-10", f"{U1}:1-10,{U2}:1-5")], (f"{U2}:6", f"{U2}:1-5", "")),
    ("another origin", f"{U1}:1-12", f"{U1}:1-10", [], ("", "", f"{U1}:11-12")),
])
def test_mysql_classify(case, mine, primary, terms, expected):
    got = gtid.classify("mysql", mine, primary, own=U2, terms=terms)
    assert (got.errant, got.tail, got.ahead) == expected, case


def test_divergence_kind_names_the_worst_first():
    assert gtid.Divergence(errant="0-3-1", tail="0-3-2").kind == "errant"
    assert gtid.Divergence(tail="0-3-2", ahead="0-1-9").kind == "tail"
    assert gtid.Divergence(ahead="0-1-9").kind == "ahead" and gtid.Divergence().kind == ""


@pytest.mark.parametrize("flavor, have, wanted, expected", [
    ("mariadb", "0-1-100", ["0-1-90", "0-2-130"], ("0-2-130", 30)),
    ("mariadb", "0-1-100", ["0-1-100"], ("", 0)),
    ("mariadb", "0-1-100,1-1-5", ["1-2-9", "0-3-101"], ("0-3-101,1-2-9", 5)),
    ("mysql", f"{U1}:1-10", [f"{U1}:1-12", f"{U1}:1-10,{U2}:1-2"], (f"{U1}:11-12,{U2}:1-2", 4)),
    ("mysql", f"{U1}:1-10", [None, ""], ("", 0)),
])
def test_missing_report(flavor, have, wanted, expected):
    assert gtid.missing_report(flavor, have, wanted) == expected
