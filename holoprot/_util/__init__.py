"""Plumbing shared by every stage: checksums and seals, atomic writes, devices and threads, the
numba cache, glibc's allocator, disjoint sets and the e3nn import shim.

Imports only the standard library, third-party packages and `holoprot.errors`; every other
holoprot package may import it.
"""
