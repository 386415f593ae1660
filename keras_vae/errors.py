"""The exception types for problems a user can fix, and the test for a full disk."""

import errno
import shutil
from pathlib import Path

# What TensorFlow's file writers (checkpoints, SavedModels) put in their errors when a write fails
# for lack of space; they raise ResourceExhaustedError or UnknownError, never an OSError.
_DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")


class UserError(Exception):
    """A problem with the user's input (options, files, environment) rather than a bug.

    The command-line scripts print the message without a traceback and exit with status 2.
    Messages say what was wrong and what to do about it.
    """

    exit_status = 2
    label = "error"  # what the scripts print before the message


class DiskFull(UserError):
    """A folder ran out of space while a backup or an export was written; nothing was lost.

    Exit status 3: distinct from bad input (2), and not a signal's status (128 + n), which cluster
    managers retry (a Kubeflow TFJob's `restartPolicy: ExitCode` retries 130, 137 and 143): a
    command that would fail the same way until someone frees space is not restarted.
    """

    exit_status = 3

    def __init__(self, folder, writing, needed_bytes, kept):
        folder = Path(folder).absolute()
        free = shutil.disk_usage(folder).free if folder.exists() else 0
        super().__init__(
            f"{folder} is full ({_megabytes(free)} free) and {writing} needs about "
            f"{_megabytes(needed_bytes)}. Nothing was lost: {kept} Free some space there and rerun "
            "the same command to continue."
        )


def _megabytes(count):
    return f"{count / 1e6:.1f} MB"


def is_disk_full(error):
    """Whether `error` (an OSError or a TensorFlow error) reports a full disk or an exhausted quota."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(text in str(error) for text in _DISK_FULL_MESSAGES)
