"""The README and docs/ tell the truth: option tables match the parsers, links resolve, code runs."""

import re

import pytest

from conftest import REPO
from keras_vae.config import EvaluateConfig, ExploreConfig, SampleConfig, TrainConfig

README = (REPO / "README.md").read_text()
COMMANDS = {"train.py": TrainConfig, "sample.py": SampleConfig, "evaluate.py": EvaluateConfig,
            "explore.py": ExploreConfig}


def _option_rows(command):
    """{flag: default cell} from the option table under `## <command>` in docs/options.md."""
    text = (REPO / "docs/options.md").read_text()
    section = text.split(f"\n## {command}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `--") and len(cells) == 3:
            for flag in re.findall(r"--[a-z][a-z0-9-]*", cells[0]):
                rows[flag] = cells[1]
    return rows


@pytest.mark.parametrize("command", COMMANDS)
def test_option_tables_match_the_parsers(command):
    rows = _option_rows(command)
    parser = COMMANDS[command].parser()
    flags = {}
    for action in parser._actions:
        names = [name for name in action.option_strings if name.startswith("--") and name != "--help"]
        if names:
            flags[names[0]] = action.default
    assert set(flags) <= set(rows), f"undocumented options of {command}: {set(flags) - set(rows)}"
    documented = {flag for flag in rows if not flag.startswith("--no-")}
    assert documented <= set(flags), f"documented but unknown: {documented - set(flags)}"
    for flag, default in flags.items():
        cell = rows[flag].lower()
        if isinstance(default, bool):
            assert ("on" if default else "off") in cell, (flag, cell)
        elif default is None:  # resolved later (e.g. from the data source): the cell says how
            assert cell, flag
        else:
            assert str(default).lower() in cell, (flag, default, cell)


def test_readme_is_a_short_front_door_for_a_user_on_their_own_machine():
    assert len(README) <= 12_000
    for workplace in ("shared/data", "this CPU", "this machine", "the project's brief"):
        assert workplace not in README


def test_every_docs_page_is_linked_and_every_link_resolves():
    pages = {path.relative_to(REPO).as_posix() for path in (REPO / "docs").glob("*.md")}
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", README))
    assert pages <= linked, f"docs pages README does not link: {pages - linked}"
    for source in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", source.read_text()):
            assert (source.parent / target).exists(), f"{source.name} links to a missing {target}"


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch, proxy):
    """The README's Python block, as written, on TFDS's mock MNIST (no download)."""
    import tensorflow_datasets as tfds

    (snippet,) = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)
    with tfds.testing.mock_data(num_examples=600):
        namespace = {}
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the code under test
    assert namespace["version"] == 1 and (tmp_path / "saved_models/decoder/1/saved_model.pb").exists()
    assert namespace["new"].shape == (16, 28, 28, 1)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]


def test_requirements_txt_pins_what_pyproject_pins_and_readme_gives_both_installs():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    wanted = [dependency.split(";")[0].strip() for dependency in project["dependencies"]]
    assert [line for line in pinned if line] == wanted
    assert all("==" in line for line in wanted)
    assert "pip install -r requirements.txt" in README and "pip install ." in README


def _servables(cell):
    """(models, default_of) of a servables cell: "vae, decoder (only as `serving_default`)"."""
    models, default_of = [], []
    for item in cell.split(", "):
        model = item.split()[0]
        if "only as" not in item:
            models.append(model)
        if "`serving_default`" in item:
            default_of.append(model)
    return tuple(models), tuple(default_of)


def test_the_signature_table_of_serving_md_is_the_one_the_exports_use():
    from keras_vae.serving.signatures import SIGNATURES

    text = (REPO / "docs/serving.md").read_text()
    section = text.split("\n## Signatures\n", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    tensors = re.compile(r"`(\w+)` \w+ \[")  # a name, its dtype, its shape
    documented = [(name.strip("`"), _servables(servables), tensors.findall(inputs), tensors.findall(outputs))
                  for name, servables, inputs, outputs in rows]
    assert documented == [(s.name, (s.models, s.default_of), s.input_names(), s.output_names())
                          for s in SIGNATURES]
    only = "conditional models only"
    for (_, servables, inputs, outputs), signature in zip(rows, SIGNATURES, strict=True):
        assert (only in servables) == signature.conditional, signature.name
        for tensors, cell in ((signature.inputs, inputs), (signature.outputs, outputs)):
            for tensor in tensors:
                assert f"`{tensor.name}` {tensor.dtype} [" in cell, (signature.name, tensor.name, cell)
            # Each tensor's text runs up to the next tensor's name: the marker belongs to one tensor.
            parts = {part.split("`")[1]: part for part in re.split(r"(?=`\w+` \w+ \[)", cell) if part}
            for tensor in tensors:
                text = parts[tensor.name]
                assert (only in text) == tensor.conditional, (signature.name, tensor.name, text)


def test_serving_md_names_every_signature_that_batching_refuses():
    from keras_vae.serving.signatures import SIGNATURES

    text = (REPO / "docs/serving.md").read_text()
    section = text.split("\n## Batching\n", 1)[1].split("\n## ", 1)[0]
    refused = {signature.name for signature in SIGNATURES if not signature.batchable}
    assert refused == {"sample", "sample_png", "interpolate", "class_names"}
    assert refused <= set(re.findall(r"`(\w+)`", section))
