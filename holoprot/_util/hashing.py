"""Checksums: of files (weights, forests, cached inputs) and of saved JSON metadata ("seals").

A sealed JSON record carries ``metadata_sha256``: the sha256 of its other fields in canonical
form (keys sorted, no whitespace, JSON numbers as Python writes them). Editing any field, even
one that no code reads, breaks the seal, so a hand-edited setting is refused on loading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from holoprot.errors import InputError

SEAL_KEY = "metadata_sha256"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_sha256(record: Mapping[str, Any]) -> str:
    """Hex sha256 of a JSON object's canonical text, leaving out its `SEAL_KEY` field."""
    body = {k: v for k, v in record.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` (normalised through JSON, so tuples become lists) plus its `SEAL_KEY` checksum."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != SEAL_KEY}))
    return body | {SEAL_KEY: json_sha256(body)}


def check_seal(record: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raise InputError naming `path` unless `record` carries a matching `SEAL_KEY`."""
    stored = record.get(SEAL_KEY)
    if stored is None:
        raise InputError(path, f"no {SEAL_KEY}: made by an older holoprot or edited; refusing it")
    if stored != json_sha256(record):
        raise InputError(
            path, f"{SEAL_KEY} does not match its content (edited by hand or corrupt): refusing it"
        )
