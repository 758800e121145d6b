"""How good are weights: reconstruction metrics, rotation invariance, linear probes and their
labels (DSSP secondary structure, residue type), as `weights/evaluate.py` runs them.

Modules: `reconstruction` (cosines, MSE and R² of the decoder's output), `features` (latents and
input invariants that the probes read), `invariance` (the latent under rotations), `labels` and
`dssp` (residue type and secondary structure of the centre residue), `probes` (logistic
regression, nearest neighbours, majority class), `splits` (a run's split, held-out group sets and
the row sample), `public_slice` (the probe on files shipped with the repository) and `evaluate`
(all of them in one report, :func:`evaluate_weights`).

May import `holoprot.embedding`, `holoprot.model`, `holoprot.training`, `holoprot.zernike`,
`holoprot.io` and `holoprot._util`; nothing in holoprot imports it (the weights scripts do).
"""

from holoprot.evaluation.dssp import dssp_states, dssp_version, eight_state, three_state
from holoprot.evaluation.evaluate import ProbeSample, draw_sample, evaluate_weights
from holoprot.evaluation.features import (
    embed_structure,
    encode_latents,
    input_invariants,
    latents_of_files,
    random_init_model,
)
from holoprot.evaluation.invariance import latent_invariance, latent_invariance_of_files
from holoprot.evaluation.labels import (
    STANDARD_AMINO_ACIDS,
    match_states,
    residue_type_labels,
    secondary_structure_labels,
)
from holoprot.evaluation.probes import (
    knn_agreement,
    logistic_probe,
    majority_class,
    probe_table,
    residue_type_probe,
)
from holoprot.evaluation.public_slice import SLICE_TEST, SLICE_TRAIN, slice_probe
from holoprot.evaluation.reconstruction import (
    cosines,
    reconstruction_cosines,
    reconstruction_rows,
    summarise_reconstruction,
)
from holoprot.evaluation.splits import (
    OLD_SETS,
    read_group_sets,
    read_split,
    sample_rows_by_file,
    subset_masks,
)

__all__ = [
    "OLD_SETS",
    "ProbeSample",
    "SLICE_TEST",
    "SLICE_TRAIN",
    "STANDARD_AMINO_ACIDS",
    "cosines",
    "dssp_states",
    "dssp_version",
    "draw_sample",
    "eight_state",
    "embed_structure",
    "encode_latents",
    "evaluate_weights",
    "input_invariants",
    "knn_agreement",
    "latent_invariance",
    "latent_invariance_of_files",
    "latents_of_files",
    "logistic_probe",
    "majority_class",
    "match_states",
    "probe_table",
    "random_init_model",
    "read_group_sets",
    "read_split",
    "reconstruction_cosines",
    "reconstruction_rows",
    "residue_type_labels",
    "residue_type_probe",
    "sample_rows_by_file",
    "secondary_structure_labels",
    "slice_probe",
    "subset_masks",
    "summarise_reconstruction",
    "three_state",
]
