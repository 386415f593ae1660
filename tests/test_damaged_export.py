"""A damaged version folder stops sample.py and evaluate.py with a message that names it, exit status 2."""

import os
import subprocess
import sys

from conftest import REPO
from keras_vae import publish
from keras_vae.serving import sample as sampling


def test_a_truncated_variables_file_names_the_folder_and_suggests_a_version(tiny_vae, idx_dir, tmp_path):
    root = tmp_path / "saved_models"
    for _ in range(2):
        publish(root, tiny_vae, {"config.json": '{"likelihood": "bernoulli"}'})
    for model in ("decoder", "vae"):  # sample.py reads the decoder, evaluate.py the vae
        (data,) = (root / model / "2/variables").glob("variables.data-*")
        data.write_bytes(data.read_bytes()[:100])  # as a full disk or an interrupted copy leaves it
    commands = {
        "sample.py": ["--model-dir", str(root / "decoder"), "--out", str(tmp_path / "samples.png")],
        "evaluate.py": ["--export-dir", str(root), "--data-dir", str(idx_dir), "--split", "test[:8]",
                        "--k", "2", "--out-dir", str(tmp_path / "evaluation")],
    }
    damaged = {"sample.py": root / "decoder/2", "evaluate.py": root / "vae/2"}
    jobs = {script: subprocess.Popen([sys.executable, str(REPO / script), *args], cwd=tmp_path, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
            for script, args in commands.items()}
    for script, job in jobs.items():
        _, stderr = job.communicate(timeout=300)
        assert job.returncode == 2, (script, stderr[-2000:])
        assert "Traceback" not in stderr, script
        assert f"Cannot load the SavedModel in {damaged[script]}" in stderr, (script, stderr)
        assert "IndexError: Read less bytes than requested" in stderr
        assert "--version (present: [1, 2])" in stderr
    assert not (tmp_path / "samples.png").exists() and not (tmp_path / "evaluation/evaluation.json").exists()
    assert sampling.sample_local(root / "decoder", 4, 0, version=1)[1] == root / "decoder/1"  # still works
