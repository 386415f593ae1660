"""A rollout under the strict fakes: versions 1 -> 2 -> 3 are published while clients compose calls.

The fake model server polls the export root as TensorFlow Serving does (`file_system_poll_wait_seconds`),
loads and warms up each new version, then unloads the old one. Meanwhile a REST and a gRPC client
run encode-then-decode compositions in a loop, each pinned to one version (`consistent`). Every
answer must be the composition of one training, and no error may reach the caller. The versions are
three different trainings (other seeds), so an answer that mixed two would match neither.
"""

import threading
import time

import fake_rest
import fake_serving
import numpy as np

from keras_vae import publish, serving
from keras_vae.models import build_vae

IMAGES = np.random.default_rng(7).random((2, 28, 28, 1)).astype(np.float32)
# Long enough that an unpinned composition would straddle a roll now and then; short, so the loop
# makes many compositions while each version is served.
PAUSE_SECONDS = 0.01
MAX_COMPOSITIONS = 3000
MAX_SECONDS = 180


def midpoint(session):
    """Encode two images, then decode the mean of their posterior means, in two calls."""
    mean = session.predict({"images": IMAGES}, "encode")["mean"]
    time.sleep(PAUSE_SECONDS)
    decoded = session.predict({"z": (mean[:1] + mean[1:]) / 2}, "decode")
    images = decoded["images"] if isinstance(decoded, dict) else decoded  # gRPC names every output
    return session.version, np.asarray(images)


def expected(vae):
    mean = vae.encode(IMAGES)[0]
    return vae.decode((mean[:1] + mean[1:]) / 2).numpy()


class Composer(threading.Thread):
    """Runs `client.consistent("vae", midpoint)` until told to stop; keeps every answer or error."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.answers, self.errors = client, [], []
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + MAX_SECONDS
        while not self.stop.is_set() and len(self.answers) < MAX_COMPOSITIONS and time.monotonic() < deadline:
            try:
                self.answers.append(self.client.consistent("vae", midpoint))
            except Exception as error:  # noqa: BLE001 - every error is a failure of the guarantee
                self.errors.append(error)


def test_compositions_during_a_rollout_come_whole_from_one_version(tmp_path):
    vaes = {version: build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=16, seed=version)
            for version in (1, 2, 3)}
    assert publish(tmp_path, vaes[1]) == 1
    core = fake_serving.ModelServer(tmp_path, file_system_poll_wait_seconds=0.05)
    try:
        with fake_rest.rest_server(core) as (url, _), fake_serving.grpc_server(core) as (target, _), \
                serving.GrpcClient(target) as grpc_client:
            composers = [Composer(serving.RestClient(url)), Composer(grpc_client)]
            for composer in composers:
                composer.start()
            for version in (2, 3):
                assert publish(tmp_path, vaes[version]) == version
                core.wait_for_state("vae", version, timeout=60)
                core.wait_for_state("vae", version - 1, state="END", timeout=60)
                time.sleep(0.5)  # compositions on the new version alone
            for composer in composers:
                composer.stop.set()
                composer.join(timeout=60)
    finally:
        core.close()
    wanted = {version: expected(vae) for version, vae in vaes.items()}
    for composer in composers:
        assert not composer.errors, composer.errors[:3]
        served = [version for version, _ in composer.answers]
        assert set(served) == {1, 2, 3} and served == sorted(served), served  # the roll happened meanwhile
        for version, answer in composer.answers:
            np.testing.assert_allclose(answer, wanted[version], atol=1e-5)
    # The trainings differ, so a mixed answer could not pass for either.
    assert np.abs(wanted[2] - wanted[1]).max() > 1e-3 and np.abs(wanted[3] - wanted[2]).max() > 1e-3
