"""ART training: the model, losses, video datasets, training loop, evaluation and export.

Importing this package imports nothing heavy: `art_train.model`, `art_train.train` and the
export need torch (the `[train]` extra); `art-prepare-dataset` needs only numpy and OpenCV.
"""
