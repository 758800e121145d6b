"""Disjoint sets (union–find) over the integers 0…n−1, with path halving."""

from __future__ import annotations


class DisjointSets:
    """Sets of ``0…n−1``, each starting alone.

    ``union(a, b)`` hangs ``a``'s root under ``b``'s, so the root of a merged set is always the
    root the second argument had: callers that number sets by their roots get the same numbers
    for the same sequence of unions.
    """

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        """The root of ``i``'s set."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        """Merge the sets of ``a`` and ``b``; False if they were one set already."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[ra] = rb
        return True
