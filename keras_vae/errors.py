"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with the user's input (options, files, environment) rather than a bug.

    The command-line scripts print the message without a traceback and exit with status 2.
    Messages say what was wrong and what to do about it.
    """

    exit_status = 2
