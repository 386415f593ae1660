"""The split grammar of IDX files and folders of pictures: TFDS's slicing syntax, parsed here.

`train`, `test[:8000]`, `test[8000:]`, `train[10%:]`, `train[:90%]+test`: named parts joined by `+`,
each optionally sliced by whole numbers or percentages. TFDS's own parser resolves a split against a
prepared data set's metadata, which IDX files and folders do not have (and importing TFDS takes
seconds), so these splits are parsed here; TFDS data sets keep TFDS's full syntax.
"""

import re

from keras_vae.errors import UserError

_SLICE = re.compile(r"^(?P<name>\w+)(\[(?P<start>-?\d+%?)?:(?P<end>-?\d+%?)?\])?$")
EXAMPLES = "'train', 'test[:8000]', 'test[8000:]', 'train[10%:]' or 'train+test'"


def parse_split(expression):
    """Parses a split expression into a list of (name, start, end) with start/end as written.

    Raises:
        UserError: if the expression is not of the TFDS form `name[start:end]` joined by `+`.
    """
    parts = []
    for part in expression.replace(" ", "").split("+"):
        match = _SLICE.match(part)
        if not match:
            raise UserError(f"Cannot parse split {expression!r}: use the TFDS slicing syntax, e.g. "
                            f"{EXAMPLES}.")
        parts.append((match["name"], match["start"], match["end"]))
    return parts


def _bound(text, size):
    if text is None:
        return None
    if text.endswith("%"):
        return int(round(size * int(text[:-1]) / 100))
    return int(text)


def windows(expression, size_of):
    """The parts of a split expression as [(name, slice)], with bounds resolved by `size_of(name)`.

    Raises:
        UserError: for an expression that does not parse.
    """
    parts = []
    for name, start, end in parse_split(expression):
        size = size_of(name)
        parts.append((name, slice(_bound(start, size), _bound(end, size))))
    return parts
