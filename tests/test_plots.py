"""The pictures: what each grid shows where, and the pixel size of every PNG."""

import matplotlib.image
import numpy as np
import pytest

from keras_vae.evaluation import figures
from keras_vae.models import build_vae


def fake_decode(z):
    """Images [n, 4, 4, 1] whose first pixels hold the latent code, so a grid shows where z went."""
    images = np.zeros((len(z), 4, 4, 1), np.float32)
    images.reshape(len(z), -1)[:, : z.shape[1]] = z
    return images


def png_size(path):
    return matplotlib.image.imread(path).shape[:2]


def test_reconstruction_rows_put_originals_above_their_reconstructions():
    originals, reconstructions = np.zeros((6, 2, 2, 1)), np.ones((6, 2, 2, 1))
    originals[:, 0, 0, 0] = reconstructions[:, 0, 0, 0] = np.arange(6)
    rows = figures.reconstruction_rows(originals, reconstructions, columns=3)
    assert rows[:, 1, 1, 0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert rows[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]


def test_interpolations_walk_from_one_image_to_the_other():
    first, second = np.full((2, 4, 4, 1), 0.25, np.float32), np.full((2, 4, 4, 1), 0.75, np.float32)
    starts, ends = np.array([[0.0, 1.0], [2.0, 2.0]]), np.array([[1.0, 1.0], [2.0, -2.0]])
    rows = figures.interpolations(fake_decode, first, second, starts, ends, steps=5).reshape(2, 7, 16)
    assert np.all(rows[:, 0] == 0.25) and np.all(rows[:, -1] == 0.75)
    np.testing.assert_allclose(rows[0, 1:6, 0], [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(rows[1, 1:6, 1], [2.0, 1.0, 0.0, -1.0, -2.0])


def test_manifold_grows_right_in_z0_and_up_in_z1():
    grid = figures.manifold(fake_decode, 3).reshape(3, 3, 16)
    q = 1.6448536  # the 95% quantile of N(0, 1)
    np.testing.assert_allclose(grid[0, :, 0], [-q, 0, q], atol=1e-5)
    np.testing.assert_allclose(grid[:, 0, 1], [q, 0, -q], atol=1e-5)


def test_traversal_sweeps_one_unit_per_row_around_the_base():
    base = np.array([0.5, -0.5, 3.0], np.float32)
    rows = figures.traversal(fake_decode, base, units=[2, 0], steps=4).reshape(2, 4, 16)[..., :3]
    np.testing.assert_allclose(rows[0, :, :2], np.tile(base[:2], (4, 1)))
    np.testing.assert_allclose(rows[1, :, 1:], np.tile(base[1:], (4, 1)))
    np.testing.assert_allclose(rows[0, :, 2], [-3.0, -1.0, 1.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(rows[1, :, 0], [-3.0, -1.0, 1.0, 3.0], atol=1e-6)


def test_principal_components_find_the_main_direction():
    rng = np.random.default_rng(0)
    line = rng.standard_normal((500, 1)) * [[3.0, 4.0, 0.0]] + rng.standard_normal((500, 3)) * 0.01
    projections, explained = figures.principal_components(line)
    assert projections.shape == (500, 2) and explained[0] > 0.999
    np.testing.assert_allclose(np.abs(projections[:, 0]), np.abs((line - line.mean(0)) @ [0.6, 0.8, 0.0]),
                               atol=0.05)


@pytest.mark.parametrize("latent_dim", [2, 5])
def test_every_picture_of_a_tiny_model_has_its_pixel_size(latent_dim, tmp_path):
    vae = build_vae("mlp", (28, 28, 1), latent_dim, hidden_dim=16)
    rng = np.random.default_rng(1)
    images, means = rng.random((11, 28, 28, 1)), rng.standard_normal((30, latent_dim))
    history = [{"epoch": 1, "loss": 3.0, "kl_loss": 1.0}, {"epoch": 2, "loss": 2.0, "kl_loss": 0.5}]
    written = figures.write_pictures(tmp_path, vae, images, means, rng.integers(0, 10, 30), history)
    # Grids of 28-pixel images with 2-pixel gaps; reconstructions show 8 of the 11 images.
    sizes = {"samples.png": (242, 242), "reconstructions.png": (62, 242),
             "interpolations.png": (5 * 30 + 2, 12 * 30 + 2), "training_curves.png": (400, 1200)}
    if latent_dim == 2:
        sizes.update({"manifold.png": (602, 602), "latent_means.png": (600, 600)})
    else:
        sizes.update({"traversal.png": (5 * 30 + 2, 11 * 30 + 2), "latent_pca.png": (600, 600)})
    assert sorted(path.name for path in written) == sorted(sizes)
    for name, size in sizes.items():
        assert png_size(tmp_path / name) == size, name


def test_charts_without_labels_or_validation_keep_their_size(tmp_path):
    figures.save_scatter(np.random.default_rng(2).standard_normal((50, 2)), tmp_path / "scatter.png")
    figures.save_training_curves([{"epoch": 1, "loss": 1.0}], tmp_path / "curves.png")
    assert png_size(tmp_path / "scatter.png") == (600, 600)
    assert png_size(tmp_path / "curves.png") == (400, 1200)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
