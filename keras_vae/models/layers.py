"""The reparameterisation layer."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vae")
class Sampling(keras.layers.Layer):
    """Draws z = mean + exp(0.5 * log_var) * eps with eps ~ N(0, I).

    The layer owns its random state (a `keras.random.SeedGenerator`), so a seeded model draws the same
    noise on every run. It always samples, in training and in inference: it is a reparameterisation,
    not a regulariser.

    Under `tf.distribute` every replica holds an identical copy of the seed state, so a naive draw
    gives every replica the *same* noise. Instead each replica draws the noise for the whole global
    batch and keeps its own slice: replicas get independent noise, and N replicas see exactly the
    noise one replica would see for the same global batch.

    It computes in float32 whatever the global dtype policy: under mixed precision a float16
    exp(0.5 * log_var) overflows to infinity once log_var passes about 22, and the noise needs
    float32 resolution; the decoder casts z to its own compute dtype.

    Args:
        seed: Integer seed of the layer's random state.
    """

    def __init__(self, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def noise(self, mean, samples=None):
        """The layer's next draw of eps ~ N(0, I): like `mean` [batch, latent], or [samples, batch,
        latent] for `samples` draws per example (the importance samples of an IWAE).

        Under tf.distribute each replica draws the noise of the global batch and keeps its slice
        (along the batch axis), so the draws do not depend on how the batch was split.
        """
        local_batch = ops.shape(mean)[0]
        replica = tf.distribute.get_replica_context()
        replicas = replica.num_replicas_in_sync if replica is not None else 1
        leading = () if samples is None else (samples,)
        if replicas == 1:
            return keras.random.normal((*leading, *ops.shape(mean)), dtype=mean.dtype,
                                       seed=self.seed_generator)
        # Exact when the global batch splits evenly (training batches always do); an uneven final
        # evaluation batch still gets valid, independent noise.
        shape = (*leading, local_batch * replicas, ops.shape(mean)[1])
        eps = keras.random.normal(shape, dtype=mean.dtype, seed=self.seed_generator)
        start = replica.replica_id_in_sync_group * local_batch
        return eps[start : start + local_batch] if samples is None else eps[:, start : start + local_batch]

    def call(self, inputs):
        mean, log_var = inputs
        return mean + ops.exp(0.5 * log_var) * self.noise(mean)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    # Keras saves a layer's own weights but not its SeedGenerator's state, so a model reloaded from a
    # .keras file would replay the noise from the start of training instead of continuing it.
    def save_own_variables(self, store):
        store["seed_state"] = self.seed_generator.state

    def load_own_variables(self, store):
        if "seed_state" in store.keys():  # files written before the state was saved lack it
            self.seed_generator.state.assign(store["seed_state"][...])
