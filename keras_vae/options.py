"""How the library's argument names read as a command's options, for the messages the commands print.

Library code names Python arguments as Keras does ("Received: batch_size=300", "a smaller
`batch_size`"); a command writes those that are its options as options ("Received: --batch-size 300").
"""

import re

# `name=value` (a quoted string, a parenthesised tuple, or a bare word) or `name` in backquotes.
_ARGUMENT = re.compile(r"\b([a-z][a-z0-9_]*)=('[^']*'|\([^)]*\)|[^\s,;)]+?)(?=[\s,;)]|\.?$|\.\s)"
                       r"|`([a-z][a-z0-9_]*)`")
# Characters that make a value need quotes on a shell command line.
_SHELL_SPECIAL = re.compile(r"[\s\[\]*?()<>|&;$'\"]")


def as_options(message, options):
    """`message` with every argument in `options` (names, e.g. "batch_size") written as an option.

    "Received: batch_size=300" -> "Received: --batch-size 300"; `image_size=(64, 48)` -> `--image-size
    64 48`; `grayscale=True` -> `--grayscale`; "a smaller `batch_size`" -> "a smaller --batch-size".
    """

    def rewrite(match):
        name, value = match[1] or match[3], match[2]
        if name not in options:
            return match[0]
        flag = "--" + name.replace("_", "-")
        if value is None or value == "True":
            return flag
        if value == "False":
            return f"--no-{flag[2:]}"
        if value.startswith("(") and value.endswith(")"):
            return f"{flag} {' '.join(part.strip() for part in value[1:-1].split(',') if part.strip())}"
        if value.startswith("'") and value.endswith("'") and not _SHELL_SPECIAL.search(value[1:-1]):
            value = value[1:-1]
        return f"{flag} {value}"

    return _ARGUMENT.sub(rewrite, message)
