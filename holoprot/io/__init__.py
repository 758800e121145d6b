"""Files in and out: expanding input arguments, reading PDB/mmCIF into arrays, the Parquet
columns and metadata of residue tables, and the atomic, resumable table writer.

Imports `holoprot._util` and `holoprot.errors` only (the pipeline's first and last stage).
"""

from holoprot.io.inputs import expand_inputs
from holoprot.io.structure import Structure, read_structure

__all__ = ["Structure", "expand_inputs", "read_structure"]
