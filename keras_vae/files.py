"""Writing files and folders so that a reader never sees half of one, and measuring what they take.

Every output that someone may read while it is written (a SavedModel version that TensorFlow Serving
polls for, a run's `model.keras`, a PNG) is written under a hidden temporary name beside its final
one and renamed when complete: a rename within a folder is atomic, so the final name holds the old
content or the new, never a part. Workers of a multi-worker run other than the chief make the same
writes (saving reads variables through collectives), into throwaway folders that are then removed.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

THROWAWAY_PREFIX = "keras_vae-"


def hidden_name(path, tag=None):
    """The staging name of `path`: `.tmp-<tag>-<name>` beside it (tag: this process's id).

    The name keeps the final suffix (`.keras`, `.png`), which Keras and matplotlib read.
    """
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid() if tag is None else tag}-{path.name}")


def remove(path):
    """Deletes a file or a folder, if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def throwaway_folder(purpose="worker"):
    """A new private folder in the system's temporary space, for writes nobody keeps; remove it after."""
    return Path(tempfile.mkdtemp(prefix=f"{THROWAWAY_PREFIX}{purpose}-"))


@contextlib.contextmanager
def staged(paths, temporaries=None, keep=True):
    """Yields temporary paths to write `paths` to; renames them into place when the block succeeds.

    The renames run in the order of `paths`. If one fails, those done are undone (for paths that did
    not exist before, such as new version folders), so no final path outlives a failure. Whatever is
    left at a temporary path afterwards, after success or failure, is deleted.

    Args:
        paths: The final paths (files or folders).
        temporaries: Their staging paths; default `hidden_name` of each.
        keep: False for a writer whose output nobody keeps (a non-chief worker): it writes into a
            throwaway folder, which is removed, and nothing is renamed.
    """
    paths = [Path(path) for path in paths]
    scratch = None if keep else throwaway_folder()
    if scratch is not None:
        temporaries = [scratch / str(index) / path.name for index, path in enumerate(paths)]
    temporaries = [Path(t) for t in temporaries] if temporaries else [hidden_name(p) for p in paths]
    for temporary in temporaries:
        remove(temporary)
        temporary.parent.mkdir(parents=True, exist_ok=True)
    renamed = []
    try:
        yield temporaries
        if keep:
            for temporary, path in zip(temporaries, paths, strict=True):
                os.replace(temporary, path)
                renamed.append((temporary, path))
    except BaseException:
        for temporary, path in reversed(renamed):
            os.rename(path, temporary)
        raise
    finally:
        for temporary in temporaries:
            remove(temporary)
        if scratch is not None:
            remove(scratch)


def write_bytes(data, path):
    """Writes `data` to `path`, replacing it only once the new file is complete."""
    with staged([path]) as (temporary,):
        temporary.write_bytes(data)


def size_on_disk(*paths):
    """Bytes of the files at `paths` (files, or folders counted with everything below them)."""
    total = 0
    for path in map(Path, paths):
        files = path.rglob("*") if path.is_dir() else [path]
        total += sum(file.stat().st_size for file in files if file.is_file())
    return total


def variables_bytes(variables):
    """Bytes of the values of `variables` (what a checkpoint of them holds, less its index)."""
    return sum(v.numpy().nbytes for v in variables)
