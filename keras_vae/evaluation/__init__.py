"""Evaluation: the ELBO and importance-weighted NLL estimators, `evaluate_vae`, and the pictures."""

from keras_vae.evaluation.estimators import active_units, bits_per_dim, importance_estimator
from keras_vae.evaluation.evaluate import evaluate_vae
from keras_vae.evaluation.figures import write_pictures

__all__ = ["active_units", "bits_per_dim", "evaluate_vae", "importance_estimator", "write_pictures"]
