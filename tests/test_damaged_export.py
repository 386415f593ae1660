"""A damaged version folder stops sample.py and evaluate.py with a message that names it, exit status 2."""

import os
import shutil
import subprocess
import sys

from conftest import REPO
from keras_vae.serving import sample as sampling
from keras_vae.serving.signatures import MODELS


def test_a_truncated_variables_file_names_the_folder_and_suggests_a_version(published, idx_dir, tmp_path,
                                                                            command):
    root = tmp_path / "saved_models"
    for model in MODELS:  # versions 1 and 2 of the session's export, with its likelihood named
        for version in ("1", "2"):
            shutil.copytree(published / model / "1", root / model / version)
            (root / model / version / "config.json").write_text('{"likelihood": "bernoulli"}')
    for model in MODELS:  # sample.py reads the decoder, evaluate.py the vae
        (data,) = (root / model / "2/variables").glob("variables.data-*")
        data.write_bytes(data.read_bytes()[:100])  # as a full disk or an interrupted copy leaves it
    commands = {
        "sample.py": ["--model-dir", str(root / "decoder"), "--out", str(tmp_path / "samples.png")],
        "evaluate.py": ["--export-dir", str(root), "--data-dir", str(idx_dir), "--split", "test[:8]",
                        "--k", "2", "--out-dir", str(tmp_path / "evaluation")],
    }
    damaged = {"sample.py": root / "decoder/2", "evaluate.py": root / "vae/2"}
    # evaluate.py in a fresh process, as a user runs it; sample.py meanwhile in this one.
    job = subprocess.Popen([sys.executable, str(REPO / "evaluate.py"), *commands["evaluate.py"]],
                           cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    sampled = command("sample.py", *commands["sample.py"], cwd=tmp_path)
    evaluated = job.communicate(timeout=300)[1]
    for script, (status, stderr) in {"sample.py": (sampled.returncode, sampled.stderr),
                                     "evaluate.py": (job.returncode, evaluated)}.items():
        assert status == 2, (script, stderr[-2000:])
        assert "Traceback" not in stderr, script
        assert f"Cannot load the SavedModel in {damaged[script]}" in stderr, (script, stderr)
        assert "IndexError: Read less bytes than requested" in stderr
        assert "--version (present: [1, 2])" in stderr
    assert not (tmp_path / "samples.png").exists() and not (tmp_path / "evaluation/evaluation.json").exists()
    assert sampling.sample_local(root / "decoder", 4, 0, version=1)[1] == root / "decoder/1"  # still works
