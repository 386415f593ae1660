"""Calls pinned to one served version, and retries, for the REST and gRPC clients.

A request without a version goes to whatever version the server serves at that moment, so two
requests can straddle a rollout: an `encode` by version 1 and a `decode` by version 2 mix the latent
spaces of two trainings. A `PinnedSession` addresses one version (`/versions/<N>`, gRPC's
`model_spec.version`) for every call; `consistent` runs a composition of calls on one, and when that
version is unloaded part-way (the server then answers NOT_FOUND for it), pins the version served now
and runs the whole composition again, never half of it.

    def by_hand(session):
        mean = session.predict({"images": pair}, "encode")["mean"]
        return session.predict({"z": (mean[:1] + mean[1:]) / 2}, "decode")

    middle = client.consistent("vae", by_hand)
"""

import logging
import time

from keras_vae.errors import ServingError

log = logging.getLogger(__name__)

# Rollouts during one composition are rare (a version change takes the server at least a warm-up):
# three in a row mean versions are published faster than the composition runs.
ATTEMPTS = 3
MAX_BACKOFF_SECONDS = 30.0
NOT_FOUND = (404, "NOT_FOUND")


class VersionGone(ServingError):
    """The version a session is pinned to is no longer served (NOT_FOUND after a rollout).

    Attributes:
        model, version: What the session was pinned to.
    """

    def __init__(self, model, version, error):
        super().__init__(f"Version {version} of {model} is no longer served ({error.detail or error}); "
                         "pin the version served now and start again.", status=error.status,
                         detail=error.detail)
        self.model, self.version = model, version


class PinnedSession:
    """Calls to one version of one model of a client, so that all their answers come from one training.

    Args:
        client: A `RestClient` or `GrpcClient`.
        model: The servable, e.g. "vae".
        version: The version every call addresses.
    """

    def __init__(self, client, model, version):
        self.client, self.model, self.version = client, model, version

    def predict(self, inputs, signature_name="serving_default", **options):
        """The client's `predict` of `model` at the pinned version; `options` are the client's own.

        Raises:
            VersionGone: if the server no longer serves the version.
            ServingError: for any other refusal.
        """
        try:
            return self.client.predict(self.model, inputs, signature_name, version=self.version, **options)
        except VersionGone:
            raise
        except ServingError as error:
            if error.status in NOT_FOUND:
                raise VersionGone(self.model, self.version, error) from error
            raise

    def __repr__(self):
        return f"PinnedSession({self.model!r}, version={self.version})"


def highest_available(model, status):
    """The highest version in a model status document whose state is AVAILABLE.

    The server lists every version it has seen (START, LOADING, AVAILABLE, UNLOADING, END; newest
    first, model_servers/get_model_status_impl.cc); requests without a version go to the highest
    AVAILABLE one.

    Raises:
        ServingError: if no version is AVAILABLE.
    """
    states = [(int(entry["version"]), entry["state"]) for entry in status.get("model_version_status", [])]
    available = [version for version, state in states if state == "AVAILABLE"]
    if not available:
        raise ServingError(f"TensorFlow Serving has no AVAILABLE version of {model} (versions and states: "
                           f"{states or 'none'}): wait until one has loaded, or see the server's log.")
    return max(available)


class Pinning:
    """Pinned sessions, for a client with `served_version(model)` and `predict(..., version=...)`."""

    def pin(self, model):
        """A `PinnedSession` on the version of `model` served now."""
        return PinnedSession(self, model, self.served_version(model))

    def consistent(self, model, compose, attempts=ATTEMPTS):
        """Runs `compose(session)` with every call pinned to one version of `model`; returns its result.

        If that version stops being served part-way (a rollout), `compose` runs again, whole, on the
        version served then. So it may run more than once: keep its side effects (files, counters)
        for after `consistent` returns.

        Args:
            model: The servable, e.g. "vae".
            compose: A function of a `PinnedSession` making the calls, through `session.predict`.
            attempts: How many versions to try before giving up.

        Raises:
            ServingError: if the version changed during each of the `attempts`, or a call was refused.
        """
        pinned = []
        for _ in range(attempts):
            session = self.pin(model)
            pinned.append(session.version)
            try:
                return compose(session)
            except VersionGone as gone:
                log.info("%s; running the composition again on the version served now.", gone)
        raise ServingError(f"The served version of {model} changed during each of {attempts} attempts "
                           f"(pinned versions {pinned}): versions are published faster than the "
                           "composition runs. Try again, or publish less often.")


def retrying(call, retries, backoff, can_retry):
    """`call()`, called again after a ServingError that `can_retry` accepts, at most `retries` times.

    The waits double from `backoff` seconds (capped at MAX_BACKOFF_SECONDS); each retry is logged as
    a warning of the `keras_vae.serving.sessions` logger.
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except ServingError as error:
            if attempt == retries or not can_retry(error):
                raise
            delay = min(backoff * 2**attempt, MAX_BACKOFF_SECONDS)
            log.warning("%s (retry %d of %d in %.3g s)", error, attempt + 1, retries, delay)
            time.sleep(delay)
