"""The explorer's JSON API over HTTP: every endpoint against the export it reads, and every bad request.

One tiny trained model (conftest's `trained_export`), served by the explorer in this process on a free
loopback port: once loaded here (`--export-dir`), once relayed to the strict REST fake (`--server`).
"""

import base64
import contextlib
import http.client
import json
import threading

import fake_rest
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import ExploreConfig
from keras_vae.errors import UserError
from keras_vae.explore import build_explorer, make_server
from keras_vae.explore.run import listening_lines
from keras_vae.images import to_uint8
from keras_vae.serving.exported import ExportedVAE


@contextlib.contextmanager
def serving(explorer, **options):
    """The explorer's server on a free loopback port, in a thread; yields its "host:port"."""
    server = make_server(explorer, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def request(address, method, path, body=None, raw=None, headers=None):
    """(status, parsed JSON answer) of one request."""
    connection = http.client.HTTPConnection(address, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, json.loads(text)


def pixels(answer):
    """The uint8 array of an API image document."""
    return np.frombuffer(base64.b64decode(answer["pixels"]), np.uint8).reshape(answer["shape"])


def as_pixels(images):
    return to_uint8(images).numpy()


@pytest.fixture(scope="module")
def model(trained_export):
    return ExportedVAE(trained_export[0])


@pytest.fixture(scope="module")
def split_images(trained_export):
    from keras_vae.data import load_split

    return load_split("test", data_dir=trained_export[1])


@pytest.fixture(scope="module")
def local(trained_export):
    """The address of an explorer of the export, with the map of the test split (96 images)."""
    root, data = trained_export
    explorer = build_explorer(ExploreConfig(export_dir=str(root), data_dir=str(data), max_steps=2000))
    with serving(explorer, max_body_bytes=200_000) as address:
        yield address


@pytest.fixture(scope="module")
def relay(trained_export, trained_server):
    """(address of an explorer relaying to the REST fake, a function that closes the fake's REST port)."""
    root, data = trained_export
    fake = contextlib.ExitStack()
    url, _ = fake.enter_context(fake_rest.rest_server(trained_server))
    # A map of 16 images: the fake reads JSON in pure Python, about a second per 8 images.
    explorer = build_explorer(ExploreConfig(server=url, export_dir=str(root), data_dir=str(data),
                                            max_steps=2000, map_points=16))
    with fake, serving(explorer) as address:
        yield address, fake.close


def test_facts_name_the_version_its_training_and_the_map(local):
    status, facts = request(local, "GET", "/api/facts")
    assert status == 200
    assert facts["version"] == 1 and facts["latent_dim"] == 4 and facts["image_shape"] == [28, 28, 1]
    assert facts["options"]["arch"] == "mlp" and facts["options"]["likelihood"] == "bernoulli"
    assert set(facts["validation"]) >= {"loss", "reconstruction_loss", "kl_loss"}
    assert facts["classes"] is None and facts["map"] == {"split": "test", "count": 96}
    assert facts["sliders"] == {"pca": 4, "latent": 4}


def _principal_plane(means):
    """(centre, the top-2 principal axes [2, D]) by an eigendecomposition of the covariance."""
    centre = means.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((means - centre).T))
    return centre, vectors[:, np.argsort(-values)[:2]].T


def test_the_map_is_the_principal_plane_of_the_splits_posterior_means(local, model, split_images):
    images, labels = split_images
    status, atlas = request(local, "GET", "/api/map")
    assert status == 200 and atlas["labels"] == labels.tolist() and atlas["count"] == 96
    means = model.encode(images.astype(np.float32) / 255.0)[0].numpy().astype(np.float64)
    centre, plane = _principal_plane(means)
    expected, points = (means - centre) @ plane.T, np.asarray(atlas["points"])
    signs = np.sign(np.sum(expected * points, axis=0))  # an axis is defined up to its sign
    np.testing.assert_allclose(points, expected * signs, atol=2e-3)
    # Pointing at an image's place decodes the projection of its mean on the plane.
    status, decoded = request(local, "POST", "/api/decode", {"point": atlas["points"][5]})
    projected = centre + ((means[5] - centre) @ plane.T) @ plane
    assert status == 200
    np.testing.assert_allclose(decoded["z"], projected, atol=2e-3)
    np.testing.assert_array_equal(pixels(decoded["images"]),
                                  as_pixels(model.decode(np.float32([decoded["z"]]))))


def test_sample_and_decode_answer_as_the_export(local, model):
    status, answer = request(local, "POST", "/api/sample", {"n": 6, "seed": 3})
    assert status == 200
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(model.sample(6, 3)))
    z = [0.5, -1.0, 0.25, 2.0]
    status, answer = request(local, "POST", "/api/decode", {"z": z})
    assert status == 200 and answer["z"] == z
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(model.decode(np.float32([z]))))


def test_encode_an_image_of_the_split_or_an_upload(local, model, split_images):
    images, labels = split_images
    status, by_index = request(local, "POST", "/api/encode", {"index": 7})
    assert status == 200 and by_index["label"] is None
    expected = model.encode(images[7:8].astype(np.float32) / 255.0)[0].numpy()[0]
    np.testing.assert_allclose(by_index["z"], expected, rtol=1e-6)
    np.testing.assert_array_equal(pixels(by_index["image"])[0], images[7])
    np.testing.assert_array_equal(pixels(by_index["reconstruction"]),
                                  as_pixels(model.decode(np.float32([by_index["z"]]))))
    png = base64.b64encode(tf.io.encode_png(images[7]).numpy()).decode()
    status, uploaded = request(local, "POST", "/api/encode", {"picture": png})
    assert status == 200 and uploaded["z"] == by_index["z"]  # PNG is lossless
    # A colour JPEG of another size: made grey and resized to the model's 28 x 28.
    colour = np.repeat(np.kron(images[7], np.ones((2, 2, 1), np.uint8)), 3, axis=-1)
    jpeg = base64.b64encode(tf.io.encode_jpeg(colour, quality=95).numpy()).decode()
    status, resized = request(local, "POST", "/api/encode", {"picture": jpeg})
    assert status == 200 and pixels(resized["image"]).shape == (1, 28, 28, 1)
    assert np.abs(pixels(resized["image"])[0].astype(int) - images[7]).mean() < 8


def test_traversals_move_along_the_principal_axes_or_the_latent_dimensions(local, model, split_images):
    images, _ = split_images
    means = model.encode(images.astype(np.float32) / 255.0)[0].numpy().astype(np.float64)
    base = means[0].tolist()
    status, along = request(local, "POST", "/api/traverse", {"z": base, "basis": "pca", "offsets": [1.5]})
    assert status == 200
    centre, plane = _principal_plane(means)
    step = np.asarray(along["z"]) - base
    # 1.5 standard deviations of the means along the first principal axis.
    deviation = np.std((means - centre) @ plane[0], ddof=1)
    np.testing.assert_allclose(abs(step @ plane[0]), 1.5 * deviation, rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(step), 1.5 * deviation, rtol=1e-3)
    np.testing.assert_array_equal(pixels(along["images"]), as_pixels(model.decode(np.float32([along["z"]]))))
    status, dims = request(local, "POST", "/api/traverse",
                           {"z": base, "basis": "latent", "offsets": [0.0, -2.0]})
    assert status == 200
    np.testing.assert_allclose(dims["z"], np.asarray(base) + [0, -2.0, 0, 0], rtol=1e-6)


def test_interpolation_between_two_images_is_the_exported_signatures(local, model, split_images):
    images, _ = split_images
    status, answer = request(local, "POST", "/api/interpolate", {"a": {"index": 2}, "b": {"index": 9},
                                                                  "steps": 5})
    assert status == 200 and answer["images"]["shape"] == [5, 28, 28, 1]
    x = images.astype(np.float32) / 255.0
    expected = model.interpolate(x[2:3], x[9:10], 5)[0]
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(expected))


BAD_REQUESTS = [
    ("/api/sample", {"n": 0}, "n must be a whole number from 1 to 256"),
    ("/api/sample", {"n": 257}, "n must be a whole number from 1 to 256"),
    ("/api/sample", {"n": True}, "n must be a whole number"),
    ("/api/sample", {"n": 4, "seed": -1}, "seed must be a whole number"),
    ("/api/sample", {"n": 4, "label": 3}, "not class-conditional"),
    ("/api/decode", {"z": [1.0, 2.0, 3.0]}, "z must hold 4 numbers; got 3"),
    ("/api/decode", {"z": [1.0, "a", 3.0, 4.0]}, "z must be a list of finite numbers"),
    ("/api/decode", {"z": [1.0, float("nan"), 3.0, 4.0]}, "z must be a list of finite numbers"),
    ("/api/decode", {"z": [0, 0, 0, 0], "point": [0, 0]}, "one of them"),
    ("/api/decode", {"point": [1.0]}, "point must hold 2 numbers"),
    ("/api/encode", {"index": 96}, "index must be a whole number from 0 to 95"),
    ("/api/encode", {"picture": "not base64!"}, "is not base64"),
    ("/api/encode", {"picture": base64.b64encode(b"GIF89a, or any text").decode()}, "not a PNG or JPEG"),
    ("/api/encode", {"picture": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()},
     "the picture"),
    ("/api/encode", {}, "must be {\"index\": i}"),
    ("/api/traverse", {"z": [0, 0, 0, 0], "basis": "pca", "offsets": [0] * 5}, "at most 4 offsets"),
    ("/api/traverse", {"z": [0, 0, 0, 0], "basis": "pca", "offsets": [11]}, "within ±10"),
    ("/api/traverse", {"z": [0, 0, 0, 0], "basis": "sideways", "offsets": [1]}, "basis must be one of"),
    ("/api/interpolate", {"a": {"index": 0}, "b": {"index": 1}, "steps": 1}, "steps must be a whole number"),
    ("/api/interpolate", {"a": {"index": 0}, "steps": 3}, "b must be {\"index\": i}"),
]


@pytest.mark.parametrize(("path", "body", "message"), BAD_REQUESTS)
def test_bad_requests_answer_400_with_a_message_and_the_server_goes_on(local, path, body, message):
    status, answer = request(local, "POST", path, body)
    assert status == 400 and message in answer["error"], answer
    assert request(local, "GET", "/api/facts")[0] == 200


def test_refusals_of_the_model_itself_answer_400(local):
    # The explorer allows 2000 steps; the exported signature's own in-graph check allows 1000.
    status, answer = request(local, "POST", "/api/interpolate", {"a": {"index": 0}, "b": {"index": 1},
                                                                  "steps": 1500})
    assert status == 400 and "steps" in answer["error"] and "[[" not in answer["error"]


def test_bad_http_requests(local):
    assert request(local, "POST", "/api/sample", raw=b"{not json")[0] == 400
    status, answer = request(local, "POST", "/api/sample", raw=b"[1, 2]")
    assert status == 400 and "JSON object" in answer["error"]
    status, answer = request(local, "POST", "/api/encode", raw=b"x" * 200_001)
    assert status == 413 and "200000" in answer["error"]
    status, answer = request(local, "GET", "/api/nothing")
    assert status == 404 and "/api/facts" in answer["error"]
    assert request(local, "GET", "/api/sample")[0] == 405
    # A page of another site reaching the loopback by a DNS name (rebinding) is refused.
    status, answer = request(local, "GET", "/api/facts", headers={"Host": "evil.example:80"})
    assert status == 403
    assert request(local, "GET", "/api/facts")[0] == 200


def test_the_page_is_served_from_the_package(local):
    connection = http.client.HTTPConnection(local, timeout=10)
    for path, kind, text in (("/", "text/html", b"<canvas id=\"map\""),
                             ("/app.js", "text/javascript", b"api("), ("/style.css", "text/css", b"canvas")):
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200 and response.headers["Content-Type"].startswith(kind)
        assert text in body, path
    connection.close()


def test_the_relay_answers_as_the_export_pinned_to_the_served_version(relay, trained_export):
    address, _ = relay
    root, data = trained_export
    local = build_explorer(ExploreConfig(export_dir=str(root), data_dir=str(data), map_points=16))
    status, facts = request(address, "GET", "/api/facts")
    assert status == 200 and facts["version"] == 1 and facts["source"].endswith("/v1/models/vae/versions/1")
    assert facts["latent_dim"] == 4 and facts["options"]["arch"] == "mlp"  # read from --export-dir
    for method, path, body in (("GET", "/api/map", None), ("POST", "/api/sample", {"n": 5, "seed": 1}),
                               ("POST", "/api/decode", {"z": [0.1, 0.2, -0.3, 1.0]}),
                               ("POST", "/api/encode", {"index": 3}),
                               ("POST", "/api/traverse", {"z": [0, 0, 0, 0], "offsets": [1, -1]}),
                               ("POST", "/api/interpolate", {"a": {"index": 0}, "b": {"index": 4},
                                                             "steps": 4})):
        status, served = request(address, method, path, body)
        loaded = local.answer(method, path, body)[1]
        assert status == 200, served
        for key in served:
            if isinstance(served[key], dict) and "pixels" in served[key]:
                difference = pixels(served[key]).astype(int) - pixels(loaded[key])
                assert np.abs(difference).max() <= 1, (path, key)
            elif key in ("z", "points", "explained"):
                np.testing.assert_allclose(served[key], loaded[key], atol=1e-4)
            else:
                assert served[key] == loaded[key], (path, key)


def test_the_relay_passes_on_the_servers_refusals_and_says_when_it_is_gone(relay):
    address, close_the_fake = relay
    status, answer = request(address, "POST", "/api/interpolate", {"a": {"index": 0}, "b": {"index": 1},
                                                                    "steps": 1500})
    assert status == 400 and "TensorFlow Serving answered 400" in answer["error"]
    assert "steps" in answer["error"]
    close_the_fake()  # the explorer stays up
    status, answer = request(address, "POST", "/api/sample", {"n": 2})
    assert status == 502 and "Cannot reach TensorFlow Serving" in answer["error"]
    assert request(address, "GET", "/api/facts")[0] == 200


def test_the_command_refuses_data_of_another_shape_and_says_when_it_opens_the_page(trained_export, tmp_path):
    import conftest

    folder = tmp_path / "small"
    folder.mkdir()
    small = conftest.synthetic_images(8, 14, 14)[..., 0]
    conftest.write_idx(folder / "t10k-images-idx3-ubyte.gz", small, 2051)
    with pytest.raises(UserError, match=r"have shape \(14, 14, 1\), but the model takes \(28, 28, 1\)"):
        build_explorer(ExploreConfig(export_dir=str(trained_export[0]), data_dir=str(folder)))
    with pytest.raises(UserError, match="--server must be a URL"):
        ExploreConfig(server="localhost:8501")
    with serving(None) as taken, pytest.raises(UserError, match="choose another `port`"):
        make_server(None, "127.0.0.1", int(taken.split(":")[1]))
    assert not any("authentication" in line for line in listening_lines(ExploreConfig(), ("127.0.0.1", 8600)))
    opened = listening_lines(ExploreConfig(host="0.0.0.0"), ("0.0.0.0", 8600))
    assert any("no authentication" in line for line in opened) and "http://0.0.0.0:8600/" in opened[-1]


# A class-conditional export: conftest's `variants["conditional"]` (ten classes "digit 0" to "digit 9",
# whose Gaussians are set apart), with the map of the trained export's test split (labels 0 to 9).
@pytest.fixture(scope="module")
def conditional(variants, trained_export):
    """(address of an explorer of the conditional export, the export loaded here, the split's images and
    labels)."""
    root, data = variants["conditional"][1], trained_export[1]
    explorer = build_explorer(ExploreConfig(export_dir=str(root), data_dir=str(data), map_points=32))
    with serving(explorer) as address:
        yield address, ExportedVAE(root), explorer.atlas.images, explorer.atlas.labels


def test_a_conditional_export_samples_decodes_and_moves_within_the_class_asked(conditional):
    from conftest import CLASSES

    address, model, images, labels = conditional
    status, facts = request(address, "GET", "/api/facts")
    assert status == 200 and facts["classes"] == list(CLASSES)
    status, atlas = request(address, "GET", "/api/map")
    assert status == 200 and atlas["labels"] == labels.tolist()
    x = images.astype(np.float32) / 255.0
    # The map: the posterior means of each image given its own class.
    means = model.encode(x, labels)[0].numpy().astype(np.float64)
    centre, plane = _principal_plane(means)
    points, expected = np.asarray(atlas["points"]), (means - centre) @ plane.T
    np.testing.assert_allclose(np.abs(points), np.abs(expected), atol=2e-3)

    drawn = {}
    for label in (3, 7):
        status, answer = request(address, "POST", "/api/sample", {"n": 6, "seed": 2, "label": label})
        assert status == 200
        drawn[label] = pixels(answer["images"])
        np.testing.assert_array_equal(drawn[label], as_pixels(model.sample(6, 2, labels=label)))
    assert np.abs(drawn[3].astype(int) - drawn[7]).max() > 20  # the class matters

    z = [0.5, -1.0, 0.25, 2.0]
    status, answer = request(address, "POST", "/api/decode", {"z": z, "label": 4})
    assert status == 200
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(model.decode(np.float32([z]), 4)))
    status, answer = request(address, "POST", "/api/traverse", {"z": z, "basis": "latent",
                                                               "offsets": [1, 0, -1], "label": 9})
    assert status == 200 and answer["z"] == [1.5, -1.0, -0.75, 2.0]
    moved = model.decode(np.float32([answer["z"]]), 9)
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(moved))
    status, answer = request(address, "POST", "/api/interpolate", {"a": {"index": 2}, "b": {"index": 5},
                                                                    "steps": 4, "label": 1})
    assert status == 200
    expected = model.interpolate(x[2:3], x[5:6], 4, labels=1)[0]
    np.testing.assert_array_equal(pixels(answer["images"]), as_pixels(expected))


def test_a_conditional_export_encodes_an_image_with_its_own_class_or_the_one_asked(conditional):
    address, model, images, labels = conditional
    x = images.astype(np.float32) / 255.0
    for body, label in (({"index": 3}, int(labels[3])), ({"index": 3, "label": 8}, 8)):
        status, answer = request(address, "POST", "/api/encode", body)
        assert status == 200 and answer["label"] == label
        z = model.encode(x[3:4], [label])[0]
        np.testing.assert_allclose(answer["z"], z[0], atol=1e-6)
        np.testing.assert_array_equal(pixels(answer["reconstruction"]), as_pixels(model.decode(z, label)))
    upload = base64.b64encode(tf.io.encode_png(images[4]).numpy()).decode()
    status, answer = request(address, "POST", "/api/encode", {"picture": upload, "label": 2})
    assert status == 200 and answer["label"] == 2
    np.testing.assert_allclose(answer["z"], model.encode(x[4:5], 2)[0][0], atol=1e-6)


CONDITIONAL_BAD_REQUESTS = [
    ("/api/sample", {"n": 4, "label": 10}, "label must be a whole number from 0 to 9; got 10."),
    ("/api/sample", {"n": 4, "label": -1}, "label must be a whole number from 0 to 9; got -1."),
    ("/api/sample", {"n": 4}, "label must be a whole number from 0 to 9; got None."),
    ("/api/decode", {"z": [0, 0, 0, 0], "label": "digit 3"}, "label must be a whole number from 0 to 9"),
    ("/api/traverse", {"z": [0, 0, 0, 0], "offsets": [1], "label": 12}, "label must be a whole number"),
    ("/api/interpolate", {"a": {"index": 0}, "b": {"index": 1}, "label": 10}, "label must be a whole"),
    ("/api/encode", {"picture": base64.b64encode(tf.io.encode_png(np.zeros((28, 28, 1), np.uint8))
                                                 .numpy()).decode()}, "got None"),
]


@pytest.mark.parametrize(("path", "body", "message"), CONDITIONAL_BAD_REQUESTS)
def test_a_conditional_export_answers_400_to_a_class_it_does_not_have(conditional, path, body, message):
    status, answer = request(conditional[0], "POST", path, body)
    assert status == 400 and message in answer["error"], answer
    assert request(conditional[0], "GET", "/api/facts")[0] == 200


def test_the_relay_reads_the_classes_of_the_served_version_and_samples_each(conditional, conditional_server,
                                                                            trained_export):
    from conftest import CLASSES

    address, model = conditional[:2]
    with fake_rest.rest_server(conditional_server) as (url, received):
        explorer = build_explorer(ExploreConfig(server=url, data_dir=str(trained_export[1]), map_points=8))
        assert ("POST", "/v1/models/vae/versions/1:predict",
                {"inputs": {"labels": [0]}, "signature_name": "class_names"}) in received
        assert explorer.model.classes == CLASSES
        status, facts = explorer.answer("GET", "/api/facts")
        assert status == 200 and facts["classes"] == list(CLASSES)
        status, served = explorer.answer("POST", "/api/sample", {"n": 3, "seed": 5, "label": 6})
        assert status == 200
        np.testing.assert_allclose(pixels(served["images"]), as_pixels(model.sample(3, 5, labels=6)), atol=1)
        status, answer = explorer.answer("POST", "/api/decode", {"z": [0, 0, 0, 0], "label": 10})
        assert status == 400 and "label must be a whole number from 0 to 9; got 10." in answer["error"]
