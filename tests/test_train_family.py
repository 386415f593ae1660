"""train.py's model-family options, in process: the model each builds, and the runs they refuse."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import cli, data
from keras_vae.config import TrainConfig
from keras_vae.models import build_vae, objectives, priors
from keras_vae.training import run

FAMILY = ("conditional", "prior", "pseudo_inputs", "objective", "iw_samples")


def _config(idx_dir, tmp_path, **options):
    return TrainConfig(data_dir=str(idx_dir), latent_dim=2, hidden_dim=8, batch_size=32, epochs=1,
                       run_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "models"), **options)


def _model(config):
    """The model a run of `config` trains, before its first step."""
    keras.utils.set_random_seed(config.seed)  # as train() does before it builds
    return run._build(config, tf.distribute.get_strategy(), data.split_of(config, config.train_split))


def _without_layer_numbers(model):
    """The model's config without the numbers Keras adds to layer names (dense_3: the fourth made)."""
    return re.sub(r'"([a-z_]+?)_[0-9]+"', r'"\1"', json.dumps(model.get_config(), sort_keys=True))


def test_the_default_options_build_the_model_of_earlier_versions(idx_dir, tmp_path):
    config = TrainConfig(data_dir=str(idx_dir))
    assert {name: config.to_dict()[name] for name in FAMILY} == {
        "conditional": False, "prior": "auto", "pseudo_inputs": None, "objective": "elbo", "iw_samples": 1}
    model = _model(config)
    keras.utils.set_random_seed(0)
    earlier = build_vae("mlp", (28, 28, 1), 20, 400, "bernoulli", 1.0, 0)  # the build train.py made
    assert _without_layer_numbers(model) == _without_layer_numbers(earlier)
    for ours, theirs in zip(model.get_weights(), earlier.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # A run saved before these options existed has none of them in its config.json: it resumes.
    saved = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in FAMILY}
    config.check_resumable_from(saved)


def test_the_choices_are_the_librarys():
    choices = {field.name: field.metadata["choices"] for field in TrainConfig.__dataclass_fields__.values()}
    assert choices["prior"] == ("auto", *priors.PRIORS)
    assert choices["objective"] == objectives.OBJECTIVES


@pytest.mark.parametrize(("options", "expected"), [
    ({"objective": "iwae", "iw_samples": 3},
     (None, "normal", None, "iwae", 3, "IWAE bound, K=3 importance samples")),
    ({"prior": "vamp", "pseudo_inputs": 5},
     (None, "vamp", 5, "elbo", 1, "ELBO, KL as a one-sample Monte Carlo estimate")),
    ({"prior": "vamp"}, (None, "vamp", priors.DEFAULT_PSEUDO_INPUTS, "elbo", 1,
                         "ELBO, KL as a one-sample Monte Carlo estimate")),
    ({"conditional": True}, (tuple("0123456789"), "class", None, "elbo", 1, "ELBO, KL in closed form")),
    ({"conditional": True, "prior": "normal", "objective": "iwae", "iw_samples": 2},
     (tuple("0123456789"), "normal", None, "iwae", 2, "IWAE bound, K=2 importance samples")),
], ids=["iwae", "vamp", "vamp-default-m", "conditional", "plain-cvae-iwae"])
def test_each_option_builds_its_variant(options, expected, idx_dir, tmp_path):
    model = _model(_config(idx_dir, tmp_path, **options))
    assert (model.classes, model.prior, model.pseudo_inputs, model.objective, model.iw_samples,
            model.bound) == expected
    assert run._variant(model).endswith(f"loss is the negative {model.bound}.")


def test_vamp_pseudo_inputs_start_as_the_first_training_images_of_the_seeds_order(idx_dir, tmp_path):
    config = _config(idx_dir, tmp_path, prior="vamp", pseudo_inputs=40, seed=3)  # more than one batch
    model = _model(config)
    split = data.split_of(config, config.train_split)
    first_batches = split.training_source(32, seed=3).dataset().take(2)
    images = np.concatenate([batch.numpy() for batch in first_batches])[:40] / 255.0
    margin = priors.PSEUDO_INPUT_MARGIN
    np.testing.assert_allclose(model.vamp_prior.pseudo_inputs(), margin + (1 - 2 * margin) * images,
                               rtol=1e-5, atol=1e-6)
    in_file_order = split.load_all(40)[0] / 255.0
    assert not np.allclose(images, in_file_order)  # shuffled: a folder's pictures come class by class


def _train_command(idx_dir, tmp_path, capsys, *options):
    """(exit status, stderr) of train.py run in this process on `idx_dir`, writing to `tmp_path`."""
    status = cli.train(["--data-dir", str(idx_dir), "--epochs", "1", "--batch-size", "32",
                        "--latent-dim", "2", "--hidden-dim", "8", "--no-progress",
                        "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "models"),
                        *options])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("unlabelled", "split"), [("train", "'train'"), ("t10k", "'test'")])
def test_conditional_on_data_without_labels_stops_before_anything_is_written(
        unlabelled, split, idx_dir, tmp_path, capsys):
    (idx_dir / f"{unlabelled}-labels-idx1-ubyte.gz").unlink()
    status, message = _train_command(idx_dir, tmp_path, capsys, "--conditional")
    assert status == 2, message
    assert f"This split has no labels (in memory, from IDX files in {idx_dir}, split {split})" in message
    for fragment in ("--image-dir", "train-labels-idx1-ubyte.gz", "'label' feature",
                     "leave out --conditional"):
        assert fragment in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--conditional", "--prior", "vamp"],
     "Received: --prior vamp with classes of 10 classes; leave out --conditional, or use --prior class."),
    (["--prior", "class"], "Received: --prior class with --no-conditional; pass --conditional, or use "
                           "--prior normal."),
    (["--iw-samples", "4"], "--iw-samples counts the importance samples of --objective iwae; the ELBO "
                            "takes one sample. Received: --iw-samples 4 with --objective elbo; use "
                            "--objective iwae."),
    (["--pseudo-inputs", "8"], "--pseudo-inputs counts the VampPrior's pseudo-inputs. Received: "
                               "--pseudo-inputs 8 with --prior normal; use --prior vamp."),
], ids=["vamp-conditional", "class-unconditional", "iw-samples-elbo", "pseudo-inputs-normal"])
def test_options_the_model_does_not_take_stop_naming_them(options, message, idx_dir, tmp_path, capsys):
    status, error = _train_command(idx_dir, tmp_path, capsys, *options)
    assert status == 2 and message in error, error
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


def test_a_run_whose_classes_changed_is_another_run(idx_dir, tmp_path, capsys):
    """The run folder of a --conditional run on labels 0 to 4, with a backup; the data now has 0 to 9."""
    config = _config(idx_dir, tmp_path, conditional=True)
    (tmp_path / "run/backup").mkdir(parents=True)
    (tmp_path / "run/backup/ckpt-1.index").write_bytes(b"")  # read only after the checks
    saved = run._config_text(config, [], tuple("01234"))
    (tmp_path / "run/config.json").write_text(saved)
    status, error = _train_command(idx_dir, tmp_path, capsys, "--conditional")
    assert status == 2, error
    assert "The classes of" in error and "changed since the run started" in error and "--restart" in error
    assert (tmp_path / "run/config.json").read_text() == saved
