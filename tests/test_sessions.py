"""Pinned sessions: a composition of calls answered by one version, redone whole when a rollout ends it.

The rollouts are the fakes' served sets swapped between two calls of a composition (what the server
does when a new version has loaded: it unloads the old one, and `/versions/<old>` answers 404), so
each test decides exactly where the roll falls. Versions 1 and 2 are two different trainings (other
seeds), so an answer that mixed them would differ from each version's own.
"""

import shutil

import fake_rest
import fake_serving
import numpy as np
import pytest

from keras_vae import publish, serving
from keras_vae.models import build_vae
from keras_vae.serving import sessions

IMAGES = np.random.default_rng(5).random((2, 28, 28, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def trainings(published, tiny_vae, tmp_path_factory):
    """(export root with versions 1 and 2 of two different VAEs, the VAEs by version)."""
    root = tmp_path_factory.mktemp("rolling")
    shutil.copytree(published / "vae", root / "vae")  # version 1: `tiny_vae`
    other = build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=16, seed=2)
    assert publish(root, other) == 2
    return root, {1: tiny_vae, 2: other}


class Rolling:
    """A model server whose served versions a test changes, as a rollout does: it forwards every call
    to the `fake_serving.ModelServer` serving the current version only."""

    def __init__(self, root, versions):
        self.cores = {v: fake_serving.ModelServer(root, {"vae": [v]}) for v in versions}
        self.current = self.cores[versions[0]]

    def roll(self, version):
        self.current = self.cores[version]

    def __getattr__(self, name):
        return getattr(self.current, name)

    def close(self):
        for core in self.cores.values():
            core.close()


@pytest.fixture(scope="module")
def rolling(trainings):
    server = Rolling(trainings[0], [1, 2])
    yield server
    server.close()


def midpoint(session, rolling=None, roll_to=None):
    """The decoding of the mean of two images' posterior means: encode, then decode, by hand.

    With `rolling`, the served version changes to `roll_to` between the two calls.
    """
    mean = session.predict({"images": IMAGES}, "encode")["mean"]
    if rolling is not None:
        rolling.roll(roll_to)
    decoded = session.predict({"z": (mean[:1] + mean[1:]) / 2}, "decode")
    return decoded["images"] if isinstance(decoded, dict) else decoded  # gRPC names every output


def expected_midpoint(vae, encoder=None):
    mean = (encoder or vae).encode(IMAGES)[0]
    return vae.decode((mean[:1] + mean[1:]) / 2).numpy()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_composition_cut_by_a_rollout_is_redone_whole_on_the_new_version(protocol, trainings, rolling):
    _, vaes = trainings
    rolling.roll(1)
    runs = []

    def compose(session):
        runs.append(session.version)
        # The first run loses its version between its two calls; the second runs undisturbed.
        return midpoint(session, rolling, 2) if len(runs) == 1 else midpoint(session)

    if protocol == "rest":
        with fake_rest.rest_server(rolling) as (url, received):
            answer = serving.RestClient(url).consistent("vae", compose)
        asked = [(method, path) for method, path, _ in received]
        assert asked == [("GET", "/v1/models/vae"), *[("POST", "/v1/models/vae/versions/1:predict")] * 2,
                         ("GET", "/v1/models/vae"), *[("POST", "/v1/models/vae/versions/2:predict")] * 2]
    else:
        with fake_serving.grpc_server(rolling) as (target, service), serving.GrpcClient(target) as client:
            answer = client.consistent("vae", compose)
        predicts = [r.model_spec.version.value for r in service.requests if hasattr(r, "inputs")]
        assert predicts == [1, 1, 2, 2]
    assert runs == [1, 2]
    np.testing.assert_allclose(answer, expected_midpoint(vaes[2]), atol=1e-5)
    # What a client without a session would have got: version 2 decoding version 1's latent code.
    assert np.abs(expected_midpoint(vaes[2], encoder=vaes[1]) - answer).max() > 1e-3


def test_a_pinned_session_reports_a_version_gone_and_other_refusals_as_they_are(rolling):
    rolling.roll(2)
    with fake_rest.rest_server(rolling) as (url, _):
        client = serving.RestClient(url)
        session = client.pin("vae")
        assert (session.model, session.version) == ("vae", 2)
        assert session.predict({"z": np.zeros((1, 4))}, "decode").shape == (1, 28, 28, 1)
        with pytest.raises(serving.ServingError, match="z must have shape") as refused:
            session.predict({"z": np.zeros((1, 5))}, "decode")
        assert not isinstance(refused.value, serving.VersionGone) and refused.value.status == 400
        rolling.roll(1)
        with pytest.raises(serving.VersionGone) as gone:
            session.predict({"z": np.zeros((1, 4))}, "decode")
        assert (gone.value.model, gone.value.version, gone.value.status) == ("vae", 2, 404)
        assert str(gone.value) == ("Version 2 of vae is no longer served (Servable not found for request: "
                                   "Specific(vae, 2)); pin the version served now and start again.")
        assert client.pin("vae").version == 1


def test_versions_rolling_faster_than_the_composition_stop_it_after_a_few_attempts(rolling):
    rolling.roll(1)
    runs = []

    def compose(session):  # every run loses its version before its second call
        runs.append(session.version)
        return midpoint(session, rolling, 3 - session.version)

    with fake_rest.rest_server(rolling) as (url, _), pytest.raises(serving.ServingError) as stopped:
        serving.RestClient(url).consistent("vae", compose)
    assert runs == [1, 2, 1] and len(runs) == sessions.ATTEMPTS
    assert str(stopped.value).startswith("The served version of vae changed during each of 3 attempts "
                                         "(pinned versions [1, 2, 1])")


def test_the_pinned_version_is_the_highest_available_of_the_servers_status():
    # As the real server lists them (get_model_status_impl.cc): every version seen, newest first.
    status = {"model_version_status": [
        {"version": "4", "state": "LOADING", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "END", "status": {"error_code": "OK", "error_message": ""}}]}
    assert sessions.highest_available("vae", status) == 3
    ended = {"model_version_status": [{"version": "1", "state": "END", "status": {}}]}
    with pytest.raises(serving.ServingError, match=r"no AVAILABLE version of vae \(versions and states: "
                                                   r"\[\(1, 'END'\)\]\): wait until one has loaded"):
        sessions.highest_available("vae", ended)


def test_every_vae_signature_answers_through_a_session_as_the_model(trainings, rolling):
    """The composites do in one pinned call what `midpoint` does in two."""
    _, vaes = trainings
    rolling.roll(2)
    with fake_rest.rest_server(rolling) as (url, _):
        session = serving.RestClient(url).pin("vae")
        between = session.predict({"images_a": IMAGES[:1], "images_b": IMAGES[1:], "steps": 3}, "interpolate")
        analogy = session.predict({"images_a": IMAGES[:1], "images_b": IMAGES[1:], "images_c": IMAGES[:1]},
                                  "analogy")
    np.testing.assert_allclose(between[:, 1], expected_midpoint(vaes[2]), atol=1e-5)
    np.testing.assert_allclose(analogy, vaes[2].reconstruct(IMAGES[1:]), atol=1e-5)
    assert between.shape == (1, 3, 28, 28, 1)
