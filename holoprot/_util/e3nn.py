"""e3nn's ``o3`` without importing ``torch._dynamo`` (≈ 2 s of start-up on 2 CPU cores).

e3nn decorates one function with ``torch.compiler.disable`` at import time, and that decorator
imports the whole of dynamo. Here it is swapped, during the import only, for a lazy one: the
function runs as is in eager mode, and goes through ``torch._dynamo.disable`` once dynamo is
loaded (as it is whenever something is being compiled), so compiled code still gets its graph
break. holoprot itself never compiles.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch


def _lazy_disable(fn: Callable | None = None, recursive: bool = True, **kwargs: Any) -> Callable:
    if fn is None:
        return lambda f: _lazy_disable(f, recursive, **kwargs)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        if "torch._dynamo" in sys.modules:
            return torch._dynamo.disable(fn, recursive, **kwargs)(*args, **kw)
        return fn(*args, **kw)

    return wrapper


def _import_o3():  # noqa: ANN202
    if "e3nn.o3" in sys.modules:
        return sys.modules["e3nn.o3"]
    original = torch.compiler.disable
    torch.compiler.disable = _lazy_disable
    try:
        from e3nn import o3
    finally:
        torch.compiler.disable = original
    return o3


o3 = _import_o3()

__all__ = ["o3"]
