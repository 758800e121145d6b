"""Training an H-(V)AE: the cached coefficient dataset and its group splits, the trainer
(checkpoints, resume, a moving average of the weights), the GPU training pack and `train`.

Imports `holoprot.embedding`, `holoprot.model`, `holoprot.zernike`, `holoprot.io` and
`holoprot._util`.
"""
