"""The layout: one room per concept, lower rooms never importing higher ones, public names that resolve.

The rooms and their order are docs/development.md's table; this test reads that table, so the docs
and the rule cannot drift apart.
"""

import ast
import importlib
import re
import subprocess
import sys
import textwrap

import pytest

import keras_vae
from conftest import REPO

PACKAGE = REPO / "keras_vae"


def _rooms():
    """{room module name: rank} from the layout table in docs/development.md (rank: its row)."""
    text = (REPO / "docs/development.md").read_text()
    table = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rooms = {}
    for line in table.splitlines():
        match = re.match(r"\| (\d+) \| ([^|]+) \|", line)
        if match:
            for room in re.findall(r"`([a-z_/.]+)`", match[2]):
                rooms["keras_vae." + room.strip("/").removesuffix(".py").replace("/", ".")] = int(match[1])
    return rooms


ROOMS = _rooms()


def _room(module):
    """The room a module belongs to: the longest room name it starts with."""
    matches = [room for room in ROOMS if module == room or module.startswith(room + ".")]
    return max(matches, key=len) if matches else None


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path):
    """The keras_vae modules a file imports, at the top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("keras_vae"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_vae"):
            # `from keras_vae import data` imports the room keras_vae.data.
            yield from (f"{node.module}.{alias.name}" if _room(f"{node.module}.{alias.name}") else node.module
                        for alias in node.names)


def test_the_layout_table_names_every_module():
    assert len(ROOMS) >= 10, ROOMS
    unplaced = [name for name, _ in _modules() if name != "keras_vae" and _room(name) is None]
    assert not unplaced, f"modules in no room of docs/development.md: {unplaced}"


def test_no_room_imports_a_higher_or_a_sibling_room():
    wrong = []
    for name, path in _modules():
        if name == "keras_vae":  # the lazy front door hands on names of every room
            continue
        own = _room(name)
        for imported in _imports(path):
            room = _room(imported)
            if room != own and (room is None or ROOMS[room] >= ROOMS[own]):
                wrong.append(f"{name} ({ROOMS[own]}) imports {imported} ({ROOMS.get(room)})")
    assert not wrong, "\n".join(wrong)


def test_subpackage_inits_only_hand_names_on():
    for path in PACKAGE.glob("*/__init__.py"):
        for node in ast.parse(path.read_text()).body:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            exports = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
            assert docstring or exports or isinstance(node, ast.ImportFrom), (path, ast.dump(node)[:80])


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules()}
    assert max(sizes.values()) <= 330, sorted(sizes.items(), key=lambda item: -item[1])[:3]


def test_public_names_resolve_and_tools_see_the_same_names():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked = [node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") ==
               "TYPE_CHECKING"]
    seen = {alias.asname or alias.name: node.module for node in ast.walk(checked[0])
            if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == keras_vae._EXPORTS
    for name, module in keras_vae._EXPORTS.items():
        assert getattr(keras_vae, name) is getattr(importlib.import_module(module), name), name
    for module, names in {"keras_vae.serving": ["RestClient", "GrpcClient", "ServingError"],
                          "keras_vae.data": ["open_split", "load_split"]}.items():
        for name in names:
            assert hasattr(importlib.import_module(module), name), (module, name)


FRESH = textwrap.dedent("""
    import sys
    if sys.argv[1] == "keras-first":
        import keras
    import keras_vae, keras_vae.cli, keras_vae.serving
    if sys.argv[1] == "keras_vae-first":
        assert "tensorflow" not in sys.modules, "importing keras_vae, cli or serving loaded TensorFlow"
        import keras
    import numpy as np
    z, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
    for path in sys.argv[4:]:
        model = keras.models.load_model(path)
        np.testing.assert_array_equal(model.decode(z), expected)
        print(type(model).__module__, type(model.sampling).__module__)
""")


@pytest.mark.parametrize("order", ["keras_vae-first", "keras-first"])
def test_a_fresh_process_loads_a_keras_file_the_keras_way(order, tmp_path, tiny_vae):
    """`import keras_vae` and `keras.models.load_model` work in either order, also for files written
    before the re-layout (their config names the modules of the flat layout)."""
    import os
    import zipfile

    import numpy as np

    tiny_vae.save(tmp_path / "now.keras")
    with zipfile.ZipFile(tmp_path / "now.keras") as source, \
            zipfile.ZipFile(tmp_path / "then.keras", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                assert b'"module": "keras_vae.models.vae"' in data
                data = data.replace(b'"keras_vae.models.vae"', b'"keras_vae.models"')
            target.writestr(item, data)
    z = np.random.default_rng(0).standard_normal((3, tiny_vae.latent_dim)).astype("f4")
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "images.npy", np.asarray(tiny_vae.decode(z)))
    command = [sys.executable, "-c", FRESH, order, *(str(tmp_path / name) for name in
                                                      ("z.npy", "images.npy", "now.keras", "then.keras"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("keras_vae.models.vae keras_vae.models.layers") == 2
