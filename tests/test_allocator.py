"""tune_malloc: applies on glibc (the machines CI and users run), harmless elsewhere."""

from __future__ import annotations

import platform

import pytest

from holoprot._util.allocator import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_tune_malloc_applies_on_glibc() -> None:
    assert tune_malloc() is True
    assert tune_malloc() is True  # idempotent
