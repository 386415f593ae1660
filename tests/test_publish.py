"""Publishing is all or nothing: failures and SIGKILL at every stage leave earlier versions untouched."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from keras_vae import publish
from keras_vae.serving import exported
from keras_vae.serving import publish as publishing
from keras_vae.serving.signatures import MODELS

# (module attribute, which call): a point in each stage of a publish. The vae is staged second, so its
# warm-up file and validation come once the decoder is staged; the renames, decoder first, come last.
STAGES = {
    "export": ("publishing.write_warmup", 2),
    "validation": ("publishing._validate", 2),
    "rename": ("os.replace", 2),
}

# Publishes once in a fresh process, which SIGKILLs itself at the chosen call: no cleanup code runs.
KILL_AT = textwrap.dedent("""
    import os, signal, sys
    from keras_vae.models import build_vae
    from keras_vae.serving import publish as publishing
    root, module_name, attribute, call = sys.argv[1], *sys.argv[2].split("."), int(sys.argv[3])
    module = {"publishing": publishing, "os": os}[module_name]
    original, calls = getattr(module, attribute), []

    def kill_at_call(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(module, attribute, kill_at_call)
    vae = build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=16, seed=0)
    publishing.publish(root, vae)
""")


def _snapshot(root, version=1):
    """{file: SHA-256} of one version of both models."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for name in MODELS for path in sorted((root / name / str(version)).rglob("*"))
            if path.is_file()}


def _layout(root):
    """{model: (numbered versions, number of temporary folders)}."""
    return {name: (exported.versions(root / name), len(list((root / name).glob(".tmp-*"))))
            for name in MODELS}


def test_two_publishes_give_versions_1_and_2_for_both_models(tiny_vae, tmp_path):
    assert publish(tmp_path, tiny_vae) == 1
    assert publish(tmp_path, tiny_vae) == 2
    assert _layout(tmp_path) == {"decoder": ([1, 2], 0), "vae": ([1, 2], 0)}
    assert not (tmp_path / "encoder").exists()  # its signatures are the vae's


def test_an_export_that_disagrees_with_the_model_is_not_published(tiny_vae, tmp_path, monkeypatch):
    class Drifting(publishing.ServingModule):  # as if the graph computed something the model does not
        def __init__(self, *args):
            super().__init__(*args)
            exact = self.eager["logits"]
            self.eager["logits"] = lambda z: {"logits": exact(z)["logits"] + 1e-3}

    monkeypatch.setattr(publishing, "ServingModule", Drifting)
    with pytest.raises(RuntimeError, match=r"decoder/\.tmp-1-\d+ disagrees with the in-memory model on lo"):
        publish(tmp_path, tiny_vae)
    assert _layout(tmp_path) == {"decoder": ([], 0), "vae": ([], 0)}


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_at_any_stage_leaves_no_numbered_folder(stage, tiny_vae, tmp_path, monkeypatch):
    publish(tmp_path, tiny_vae)
    before = _snapshot(tmp_path)
    target, call = STAGES[stage]
    module_name, attribute = target.split(".")
    module = {"publishing": publishing, "os": os}[module_name]
    original, calls = getattr(module, attribute), []

    def fail_at_call(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, attribute, fail_at_call)
    with pytest.raises(RuntimeError, match="injected failure"):
        publish(tmp_path, tiny_vae)
    monkeypatch.undo()
    assert _layout(tmp_path) == {"decoder": ([1], 0), "vae": ([1], 0)}
    assert _snapshot(tmp_path) == before
    assert publish(tmp_path, tiny_vae) == 2


def test_a_kill_at_any_stage_leaves_earlier_versions_and_the_next_publish_intact(tiny_vae, tmp_path):
    roots = {stage: tmp_path / stage.replace(" ", "_") for stage in STAGES}
    before = {}
    for stage, root in roots.items():
        publish(root, tiny_vae)
        before[stage] = _snapshot(root)
    # One process per stage, all at once: each spends most of its time importing TensorFlow.
    jobs = {stage: subprocess.Popen(
        [sys.executable, "-c", KILL_AT, str(roots[stage]), target, str(call)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    ) for stage, (target, call) in STAGES.items()}
    for stage, job in jobs.items():
        _, stderr = job.communicate(timeout=180)
        assert job.returncode == -signal.SIGKILL, (stage, stderr[-2000:])

    for stage, root in roots.items():
        layout = _layout(root)
        assert _snapshot(root) == before[stage], stage
        if stage == "rename":
            # Two folders cannot be renamed at once: the decoder's version is complete and served,
            # the vae's is still staged, and the next publish finishes it.
            assert layout == {"decoder": ([1, 2], 0), "vae": ([1], 1)}
            assert len(exported.read_warmup(root / "decoder/2")) == 5  # one request per signature
            expected_version, expected_versions = 3, [1, 2, 3]
        else:
            # Killed before anything was renamed: no version 2 anywhere; the temporary folders stay.
            assert [versions for versions, _ in layout.values()] == [[1], [1]], (stage, layout)
            assert sum(temporaries for _, temporaries in layout.values()) >= 1, (stage, layout)
            expected_version, expected_versions = 2, [1, 2]
        assert publish(root, tiny_vae) == expected_version, stage
        assert _layout(root) == {name: (expected_versions, 0) for name in MODELS}, stage
        assert len(exported.read_warmup(root / "vae/2")) == 10
