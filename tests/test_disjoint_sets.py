"""_util.disjoint_sets: the same partition as a graph search, roots from the second argument."""

from __future__ import annotations

import numpy as np

from holoprot._util.disjoint_sets import DisjointSets


def _components_by_search(n: int, edges: list[tuple[int, int]]) -> list[frozenset[int]]:
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen: set[int] = set()
    parts = []
    for start in range(n):
        if start in seen:
            continue
        stack, part = [start], set()
        while stack:
            i = stack.pop()
            if i not in part:
                part.add(i)
                stack.extend(neighbours[i] - part)
        seen |= part
        parts.append(frozenset(part))
    return parts


def test_partition_matches_a_graph_search_and_union_reports_merges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        edges = [tuple(int(v) for v in rng.integers(0, n, 2)) for _ in range(rng.integers(0, 50))]
        sets = DisjointSets(n)
        merges = sum(sets.union(a, b) for a, b in edges)
        groups: dict[int, set[int]] = {}
        for i in range(n):
            groups.setdefault(sets.find(i), set()).add(i)
        expected = _components_by_search(n, edges)
        assert sorted(map(sorted, groups.values())) == sorted(map(sorted, expected))
        assert merges == n - len(expected)


def test_union_keeps_the_second_argument_root():
    sets = DisjointSets(4)
    assert sets.union(0, 1) and sets.find(0) == 1
    assert sets.union(2, 0) and sets.find(2) == 1
    assert not sets.union(0, 2)
