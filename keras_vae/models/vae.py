"""The VAE model: its options, losses, distribution-aware training and test steps, and `build_vae`.

The methods a trained model answers (encode, decode, sample, ...) are in `keras_vae.models.inference`.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_vae.images import to_unit_interval
from keras_vae.models import objectives, priors
from keras_vae.models.inference import Inference
from keras_vae.models.inputs import checked_labels, class_names
from keras_vae.models.layers import Sampling
from keras_vae.models.losses import RECONSTRUCTION_LOSSES, kl_divergence
from keras_vae.models.networks import build_decoder, build_encoder


def _global_count(images):
    """The number of examples in the *global* batch, summed over all replicas.

    Optimizers sum gradients across replicas, so each replica's loss must be its sum over examples
    divided by this count; dividing by the local batch size (a plain `reduce_mean`) would make
    gradients N times too large with N replicas.
    """
    count = ops.cast(ops.shape(images)[0], "float32")
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return count


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(Inference, keras.Model):
    """A variational autoencoder, optionally class-conditional, trained on the ELBO or the IWAE bound.

    The default is the classic model: loss per image = reconstruction + beta * KL(q(z|x) || N(0, I)).
    Use `encode`, `decode`, `sample` and `reconstruct` on images in [0, 1] of shape [batch, H, W, C]
    (and `labels`, class indices, for a class-conditional model); the exported serving signatures, the
    sample grids and evaluation call these same methods. Training works with `Model.fit` and with the
    distribution-aware loop in `keras_vae.training.Trainer`, which runs `train_step` and `test_step`
    through `strategy.run`; a class-conditional model trains on (images, labels) batches.

    Calling the model, `vae(images)`, returns the per-pixel *logits* of a reconstruction through one
    random posterior sample z ~ q(z | x), as the training loss sees it; `reconstruct` gives the
    deterministic reconstruction in [0, 1].

    Args:
        encoder: Model mapping images (and one-hot labels) to `[mean, log_var]`.
        decoder: Model mapping latents (and one-hot labels) to per-pixel logits.
        likelihood: "bernoulli" or "gaussian" (see `keras_vae.models.losses`).
        beta: Weight of the KL term (of log p(z) - log q(z | x) in the IWAE's log-weights).
        seed: Seed of the sampling layer's random state (and of the pseudo-inputs' first draw).
        classes: For a class-conditional model: the number of classes, or their names.
        objective: "elbo" or "iwae" (`keras_vae.models.objectives`).
        iw_samples: K, the importance samples per image of objective "iwae".
        prior: "normal" (N(0, I)), "class" (a learned Gaussian per class) or "vamp" (a VampPrior);
            None: "class" for a class-conditional model, else "normal" (`keras_vae.models.priors`).
        pseudo_inputs: M, the VampPrior's pseudo-inputs (None: 500 for prior "vamp").
    """

    def __init__(self, encoder, decoder, likelihood="bernoulli", beta=1.0, seed=None, classes=None,
                 objective="elbo", iw_samples=1, prior=None, pseudo_inputs=None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"likelihood must be one of {sorted(RECONSTRUCTION_LOSSES)}.")
        self.classes = class_names(classes)
        self.objective, self.iw_samples = objectives.check_objective(objective, iw_samples)
        self.prior, self.pseudo_inputs = priors.check_prior(prior, self.classes, pseudo_inputs)
        count = None if self.classes is None else len(self.classes)
        for part, network in (("encoder", encoder), ("decoder", decoder)):
            if len(network.inputs) != (1 if count is None else 2):
                wanted = "one input" if count is None else "two inputs (the second one-hot labels)"
                raise ValueError(f"The {part} takes {len(network.inputs)} inputs, but a model with "
                                 f"classes={count} needs {wanted}: build it with "
                                 f"build_{part}(..., classes={count}).")
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = beta
        self.seed = seed
        self.sampling = Sampling(seed=seed, name="sampling")
        # The KL weight in use: `beta`, or less during a warm-up (see KLWarmup). A variable, so that
        # changing it does not retrace the compiled step.
        self.kl_weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(beta),
                                         trainable=False, name="kl_weight")
        self.class_prior = (priors.ClassPrior(len(self.classes), self.latent_dim, name="class_prior")
                            if self.prior == "class" else None)
        self.vamp_prior = (priors.VampPrior(self.pseudo_inputs, self.image_shape,
                                            None if seed is None else seed + 1, name="vamp_prior")
                           if self.prior == "vamp" else None)
        self._reconstruction = RECONSTRUCTION_LOSSES[likelihood]
        # XLA cannot compile the cross-replica sum of gradients, so only the per-replica part of the
        # step is compiled (when `jit_compile` is on), also under tf.distribute.
        self._xla_gradients = tf.function(self._gradients, jit_compile=True)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        # The encoder and decoder are built functional models, so the VAE is complete as constructed.
        # Keras needs to know it: a model not marked built is saved with a warning, and loading its
        # .keras file would skip the optimizer's state.
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    @property
    def image_shape(self):
        """(height, width, channels) of the images the model takes."""
        return tuple(self.encoder.inputs[0].shape[1:])

    @property
    def latent_dim(self):
        return self.decoder.inputs[0].shape[-1]

    @property
    def bound(self):
        """The bound on log p(x) whose negative the `loss` metric is, e.g. "IWAE bound, K=5 importance
        samples"; `kl_loss` is the closed form only where this says so."""
        return objectives.bound_name(self.objective, self.iw_samples, self._closed_form_kl)

    @property
    def _closed_form_kl(self):
        return self.objective == "elbo" and self.prior != "vamp"

    def call(self, images, labels=None, training=False):
        """The logits of a reconstruction through one random posterior sample (see the class doc)."""
        images = tf.convert_to_tensor(images)  # Keras calls networks on lists of tensors only
        labels = checked_labels(labels, self.classes, tf.shape(images)[0])
        mean, log_var = self._encoded(images, labels, training)
        return self._logits(self.sampling([mean, log_var]), labels, training)

    def per_example_losses(self, images, labels=None, training=False):
        """Returns (loss, reconstruction, kl), each of shape [batch], in float32 nats.

        `loss` is the negative of the bound `bound` names; for objective "iwae" the reconstruction and
        the (Monte Carlo) KL are averages over the K samples.
        """
        images = tf.convert_to_tensor(images)  # Keras calls networks on lists of tensors only
        return self._per_example(images, checked_labels(labels, self.classes, tf.shape(images)[0]), training)

    def _per_example(self, images, labels, training):
        mean, log_var = self._encoded(images, labels, training)
        kl_weight = ops.cast(self.kl_weight, "float32")
        if self._closed_form_kl:
            logits = self._logits(self.sampling([mean, log_var]), labels, training)
            reconstruction = self._reconstruction(images, logits)
            if self.prior == "class":
                kl = priors.gaussian_kl(mean, log_var, *self.class_prior.parameters(labels))
            else:
                kl = kl_divergence(mean, log_var)
            return reconstruction + kl_weight * kl, reconstruction, kl
        samples = self.iw_samples
        eps = self.sampling.noise(mean, samples)  # [K, batch, latent]
        z = mean + ops.exp(0.5 * log_var) * eps
        # Row k * batch + b of the flattened samples belongs to example b, as do the tiled inputs.
        flat_z = ops.reshape(z, (-1, self.latent_dim))
        tiled = tf.tile(images, tf.concat([[samples], tf.ones([tf.rank(images) - 1], tf.int32)], 0))
        flat_labels = None if labels is None else tf.tile(labels, [samples])
        log_likelihood = -self._reconstruction(tiled, self._logits(flat_z, flat_labels, training))
        return objectives.importance_weighted(
            ops.reshape(log_likelihood, (samples, -1)), self._log_prior(z, labels, training),
            objectives.log_posterior(eps, log_var), kl_weight)

    def _update_metrics(self, loss, reconstruction, kl):
        # Mean over per-example values: the metric variables sum across replicas when read, so the
        # result is the exact mean over every example seen, however the batches were split.
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def _batch(self, data):
        """(images in [0, 1], checked labels or None) of a batch; uint8 images (the training
        pipeline's) are scaled here. A model that is not conditional ignores labels (`fit(x, y)`)."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        images = to_unit_interval(images) if images.dtype == tf.uint8 else images
        if self.classes is None:
            return images, None
        labels = data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None
        if labels is None:
            raise ValueError("A class-conditional model trains and evaluates on (images, labels) batches "
                             "(`fit(images, labels)`, a data source's `dataset()` with labels=True); "
                             "got batches of images alone. Received: labels=None.")
        return images, checked_labels(labels, self.classes, tf.shape(images)[0])

    def _gradients(self, images, labels, count):
        """This replica's gradients of its share of the global mean loss, and its per-example losses."""
        with tf.GradientTape() as tape:
            losses = self._per_example(images, labels, training=True)
            # scale_loss is the identity except under a LossScaleOptimizer (float16 training).
            objective = self.optimizer.scale_loss(ops.sum(losses[0]) / count)
        return tape.gradient(objective, self.trainable_variables), losses

    def train_step(self, data, global_batch_size=None):
        """One optimizer step on a batch (this replica's part of it under tf.distribute).

        Args:
            data: Images, or a tuple whose first element is the images (and second the labels, for
                a class-conditional model).
            global_batch_size: The size of every global batch, from a caller that feeds only full
                batches (the `Trainer`): then counting the examples needs no cross-replica sum.
                Without it (e.g. under `Model.fit`, whose last batch may be partial) they are counted.
        """
        images, labels = self._batch(data)
        count = float(global_batch_size) if global_batch_size else _global_count(images)
        gradients_of = self._xla_gradients if self.jit_compile else self._gradients
        gradients, losses = gradients_of(images, labels, count)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return self._update_metrics(*losses)

    def test_step(self, data):
        return self._update_metrics(*self._per_example(*self._batch(data), training=False))

    def fit(self, x=None, y=None, *args, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`, refusing an endless dataset without `steps_per_epoch`.

        Keras would run the first epoch of such a dataset (e.g. `InMemoryImages.dataset()`) forever.
        """
        if (isinstance(x, tf.data.Dataset) and steps_per_epoch is None
                and int(x.cardinality()) == tf.data.INFINITE_CARDINALITY):
            raise ValueError("x is an endless dataset: pass steps_per_epoch (for a keras_vae data source, "
                             "steps_per_epoch=source.steps_per_epoch).")
        return super().fit(x, y, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "likelihood": self.likelihood,
            "beta": self.beta,
            "seed": self.seed,
            "classes": None if self.classes is None else list(self.classes),
            "objective": self.objective,
            "iw_samples": self.iw_samples,
            "prior": self.prior,
            "pseudo_inputs": self.pseudo_inputs,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("encoder", "decoder"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def build_vae(arch, image_shape, latent_dim=20, hidden_dim=400, likelihood="bernoulli", beta=1.0,
              seed=None, *, classes=None, objective="elbo", iw_samples=1, prior=None, pseudo_inputs=None):
    """Builds a VAE for images of `image_shape`; see `build_encoder`, `build_decoder` and `VAE`.

    The defaults build the classic model: unconditional, trained on the ELBO, prior N(0, I).

    Raises:
        UserError: for an unknown architecture, objective or prior, images the architecture cannot
            take, or options that do not go together (e.g. prior="vamp" with `classes`).
    """
    # Checked before the networks are built, so that nothing is built for options that do not go together.
    names = class_names(classes)
    objectives.check_objective(objective, iw_samples)
    priors.check_prior(prior, names, pseudo_inputs)
    count = None if names is None else len(names)
    return VAE(
        build_encoder(arch, image_shape, latent_dim, hidden_dim, count),
        build_decoder(arch, image_shape, latent_dim, hidden_dim, count),
        likelihood=likelihood,
        beta=beta,
        seed=seed,
        classes=names,
        objective=objective,
        iw_samples=iw_samples,
        prior=prior,
        pseudo_inputs=pseudo_inputs,
        name="vae",
    )
