"""Every error a user can fix, with the exit status the commands give it, and the test for a full disk.

| class | exit status | raised when |
| --- | --- | --- |
| `UserError` | 2 | bad options, files, data or requests |
| `ServingError` | 2 | TensorFlow Serving refused a request or could not be reached |
| `TrainingDiverged` | 1 | the loss became NaN or infinite |
| `WorkerLost` | 1 | another worker of a multi-worker run stopped |
| `DiskFull` | 3 | a folder filled up while a backup or an export was written |
| `Preempted` | 128 + signal | SIGTERM or SIGINT stopped training after a backup |

Library code names the Python argument at fault, as Keras does ("Received: image_shape=(21, 21, 1)");
the commands translate those names into their options (`keras_vae.cli`). Nothing here imports
TensorFlow, so the REST client can use these classes without it.
"""

import errno
import shutil
from pathlib import Path

# What TensorFlow's file writers (checkpoints, SavedModels) put in their errors when a write fails
# for lack of space; they raise ResourceExhaustedError or UnknownError, never an OSError.
_DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")


class UserError(Exception):
    """A problem with the user's input (arguments, files, environment) rather than a bug.

    The commands print the message without a traceback and exit with `exit_status`. Messages say
    what was wrong and what to do about it.
    """

    exit_status = 2
    label = "error"  # what the commands print before the message


class ServingError(UserError):
    """TensorFlow Serving refused a request, or could not be reached.

    Attributes:
        status: The HTTP status code or gRPC status name; None when no answer came.
        detail: The server's own message (for REST, the "error" of the JSON body).
    """

    def __init__(self, message, status=None, detail=None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""

    exit_status = 1


class WorkerLost(UserError):
    """Another worker of a multi-worker run stopped (preempted, crashed, unreachable)."""

    exit_status = 1


class DiskFull(UserError):
    """A folder ran out of space while a backup or an export was written; nothing was lost.

    Exit status 3: distinct from bad input (2), and not a signal's status (128 + n), which cluster
    managers retry (a Kubeflow TFJob's `restartPolicy: ExitCode` retries 130, 137 and 143): a
    command that would fail the same way until someone frees space is not restarted.

    Args:
        folder: The folder that is full.
        writing: What was being written ("the next backup", "the export").
        needed_bytes: About how much it needs.
        kept: A sentence saying what is intact.
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


class Preempted(UserError):
    """Training stopped on a signal after backing up the step it had reached.

    Exit status 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), what a shell reports
    for a process the signal ended: cluster managers treat these as retryable (a Kubeflow TFJob's
    `restartPolicy: ExitCode` restarts on 130, 137 and 143), and rerunning the command resumes.
    """

    label = "stopped"

    def __init__(self, signum, message):
        self.exit_status = 128 + signum
        super().__init__(message)


def _megabytes(count):
    return f"{count / 1e6:.1f} MB"


def is_disk_full(error):
    """Whether `error` (an OSError or a TensorFlow error) reports a full disk or an exhausted quota."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(text in str(error) for text in _DISK_FULL_MESSAGES)
