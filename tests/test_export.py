import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_vae import export
from keras_vae.models import build_vae

# Runs in a fresh interpreter with nothing of this project importable.
LOAD_AND_RUN = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np, tensorflow as tf
    assert importlib.util.find_spec("keras_vae") is None, "keras_vae must not be importable here"
    decoder = tf.saved_model.load(sys.argv[1] + "/decoder/1").signatures["serving_default"]
    encoder = tf.saved_model.load(sys.argv[1] + "/encoder/1").signatures["serving_default"]
    z = np.load(sys.argv[2])
    x = np.load(sys.argv[3])
    out = {f"images_{n}": decoder(z=tf.constant(z[:n]))["images"].numpy() for n in (1, 7)}
    out.update({k: v.numpy() for k, v in encoder(images=tf.constant(x)).items()})
    np.savez(sys.argv[4], **out)
""")


@pytest.fixture
def vae():
    return build_vae("mlp", (28, 28, 1), latent_dim=6, hidden_dim=32, seed=0)


def test_round_trip_in_a_process_without_the_project(vae, tmp_path):
    version = export.publish(tmp_path / "models", vae.encoder, vae.decoder, {"config.json": "{}"})
    assert version == 1
    rng = np.random.default_rng(1)
    z, x = rng.standard_normal((7, 6)).astype("f4"), rng.random((5, 28, 28, 1)).astype("f4")
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(LOAD_AND_RUN)
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(tmp_path / "models"), str(tmp_path / "z.npy"),
         str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    expected = 1 / (1 + np.exp(-np.asarray(vae.decoder(z))))
    assert out["images_1"].shape == (1, 28, 28, 1) and out["images_7"].shape == (7, 28, 28, 1)
    np.testing.assert_allclose(out["images_1"], expected[:1], atol=1e-6)
    np.testing.assert_allclose(out["images_7"], expected, atol=1e-6)
    mean, log_var = vae.encoder(x)
    np.testing.assert_allclose(out["mean"], np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(out["log_var"], np.asarray(log_var), atol=1e-5)
    assert json.loads((tmp_path / "models/decoder/1/config.json").read_text()) == {}


def test_saved_model_cli_shows_the_signatures(vae, tmp_path):
    export.publish(tmp_path, vae.encoder, vae.decoder)
    shown = {
        name: subprocess.run(["saved_model_cli", "show", "--all", "--dir", str(tmp_path / name / "1")],
                             capture_output=True, text=True, check=True).stdout
        for name in ("decoder", "encoder")
    }
    decoder = shown["decoder"].split("signature_def['serving_default']")[1]
    assert "MetaGraphDef with tag-set: 'serve'" in shown["decoder"]
    assert "inputs['z']" in decoder and "shape: (-1, 6)" in decoder
    assert "outputs['images']" in decoder and "shape: (-1, 28, 28, 1)" in decoder
    assert decoder.count("DT_FLOAT") == 2
    logits = shown["decoder"].split("signature_def['logits']")[1].split("signature_def[")[0]
    assert "inputs['z']" in logits and "outputs['logits']" in logits
    encoder = shown["encoder"].split("signature_def['serving_default']")[1]
    assert "inputs['images']" in encoder and "shape: (-1, 28, 28, 1)" in encoder
    assert "outputs['mean']" in encoder and "outputs['log_var']" in encoder


def test_versions_count_up_and_failures_leave_nothing(vae, tmp_path, monkeypatch):
    assert export.publish(tmp_path, vae.encoder, vae.decoder) == 1
    assert export.publish(tmp_path, vae.encoder, vae.decoder) == 2

    def broken(*args):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(export, "_validate", broken)
    with pytest.raises(RuntimeError):
        export.publish(tmp_path, vae.encoder, vae.decoder)
    for name in ("decoder", "encoder"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["1", "2"]
        assert (tmp_path / name / "2" / "saved_model.pb").exists()
