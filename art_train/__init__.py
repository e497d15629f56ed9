"""ART training: the model, losses, video datasets, training loop, evaluation and export."""

from art_train.model import ARTConfig, create_model, get_config, list_models  # noqa: F401
