"""rapidjson 1.1.0 as TensorFlow Serving builds it (tensorflow_serving/workspace.bzl pins v1.1.0).

The REST API parses every body with ParseJson (tensorflow_serving/util/json_tensor.cc) and quotes JSON in
its messages with JsonValueToDebugString; both are rapidjson's, so the fake reads and writes JSON with
this module, never with Python's `json`: different numbers, errors and offsets would leak into answers.
Rules cite rapidjson's headers as RJ:<file> (include/rapidjson/ at tag v1.1.0).

Values: None, True, False, int (rapidjson's Int/Uint/Int64/Uint64, told apart by range), float (Double),
bytes (strings, raw: no encoding is checked), list (arrays) and `JsonObject` (objects).
"""

# RJ:error/en.h GetParseError_En, by ParseErrorCode name.
PARSE_ERRORS = {
    "DocumentEmpty": "The document is empty.", "ValueInvalid": "Invalid value.",
    "ObjectMissName": "Missing a name for object member.",
    "ObjectMissColon": "Missing a colon after a name of object member.",
    "ObjectMissCommaOrCurlyBracket": "Missing a comma or '}' after an object member.",
    "ArrayMissCommaOrSquareBracket": "Missing a comma or ']' after an array element.",
    "StringUnicodeEscapeInvalidHex": "Incorrect hex digit after \\u escape in string.",
    "StringUnicodeSurrogateInvalid": "The surrogate pair in string is invalid.",
    "StringEscapeInvalid": "Invalid escape character in string.",
    "StringMissQuotationMark": "Missing a closing quotation mark in string.",
    "NumberTooBig": "Number too big to be stored in double.",
    "NumberMissFraction": "Miss fraction part in number.", "NumberMissExponent": "Miss exponent in number.",
}
# RJ:reader.h ParseStringToStream: the escape table (note `\/`).
ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
           ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
DIGITS = b"0123456789"


class JsonObject(list):
    """An object: (key bytes, value) pairs in document order, duplicate keys kept (RJ:document.h)."""

    def find(self, key):
        """FindMember (RJ:document.h:1153-1161): the first member named `key`, or None."""
        return next((pair for pair in self if pair[0] == key), None)

    def get(self, key):
        member = self.find(key)
        return None if member is None else member[1]


class ParseError(Exception):
    """A parse failure: `code` (a PARSE_ERRORS key) at byte `offset` of the body."""

    def __init__(self, code, offset):
        super().__init__(f"{PARSE_ERRORS[code]} at offset: {offset}")
        self.code, self.offset = code, offset


class _Stream:
    """MemoryStream under EncodedInputStream<UTF8> (RJ:memorystream.h:45-47, RJ:encodedstream.h:66-80)."""

    def __init__(self, data):
        self.data, self.pos = data, 0
        for bom in (0xEF, 0xBB, 0xBF):  # each BOM byte is skipped on its own; Tell() still counts it
            if self.peek() == bom:
                self.pos += 1

    def peek(self):  # 0 at the end, as for an embedded NUL
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def take(self):
        c = self.peek()
        self.pos += 1
        return c

    def consume(self, c):
        if self.peek() == ord(c):
            self.pos += 1
            return True
        return False

    def digit(self):
        return self.peek() in DIGITS


def _string(s):
    """ParseStringToStream (RJ:reader.h:840-905), at the opening quote; returns the raw bytes."""
    s.take()
    out = bytearray()
    while True:
        c = s.peek()
        if c == ord("\\"):
            start = s.pos
            s.take()
            e = s.peek()
            if e in ESCAPES:
                s.take()
                out += ESCAPES[e]
            elif e == ord("u"):
                s.take()
                point = _hex4(s, start)
                if 0xD800 <= point <= 0xDBFF:  # a lead surrogate needs its trail (a lone trail is kept)
                    if not (s.consume("\\") and s.consume("u")):
                        raise ParseError("StringUnicodeSurrogateInvalid", start)
                    trail = _hex4(s, start)
                    if not 0xDC00 <= trail <= 0xDFFF:
                        raise ParseError("StringUnicodeSurrogateInvalid", start)
                    point = (((point - 0xD800) << 10) | (trail - 0xDC00)) + 0x10000
                out += chr(point).encode("utf-8", "surrogatepass")
            else:
                raise ParseError("StringEscapeInvalid", start)
        elif c == ord('"'):
            s.take()
            return bytes(out)
        elif c < 0x20:
            raise ParseError("StringMissQuotationMark" if c == 0 else "StringEscapeInvalid", s.pos)
        else:
            out.append(s.take())  # Transcoder<UTF8, UTF8>: bytes copied, never validated


def _hex4(s, escape_offset):
    point = 0
    for _ in range(4):
        c = bytes([s.peek()])
        if c not in b"0123456789abcdefABCDEF" or not c:
            raise ParseError("StringUnicodeEscapeInvalidHex", escape_offset)
        point = point * 16 + int(c, 16)
        s.take()
    return point


def _literal(s, word, value):
    """ParseNull/ParseTrue/ParseFalse (RJ:reader.h:704-740)."""
    s.take()
    if all(s.consume(c) for c in word[1:]):
        return value
    raise ParseError("ValueInvalid", s.pos)


def _number(s):
    """ParseNumber (RJ:reader.h:1135-1386) without kParseFullPrecisionFlag, on a 64-bit build."""
    start = s.pos
    minus = s.consume("-")
    i = i64 = 0
    use64 = use_double = nan_or_inf = False
    digits = 0
    d = 0.0
    if s.peek() == ord("0"):
        s.take()
    elif ord("1") <= s.peek() <= ord("9"):
        i = s.take() - 48
        limit, last = (214748364, ord("8")) if minus else (429496729, ord("5"))
        while s.digit():
            if i >= limit and (i != limit or s.peek() > last):
                i64, use64 = i, True
                break
            i = i * 10 + s.take() - 48
            digits += 1
    elif s.peek() in (ord("I"), ord("N")):  # kParseNanAndInfFlag: NaN, Inf, Infinity (case-sensitive)
        nan_or_inf = True
        if s.consume("N") and s.consume("a") and s.consume("N"):
            d = float("nan")  # the sign of -NaN is dropped
        elif s.consume("I") and s.consume("n") and s.consume("f"):
            d = float("-inf") if minus else float("inf")
            if s.peek() == ord("i") and not all(s.consume(c) for c in "inity"):
                raise ParseError("ValueInvalid", s.pos)
        else:
            raise ParseError("ValueInvalid", s.pos)
    else:
        raise ParseError("ValueInvalid", s.pos)
    if use64:
        limit, last = (0x0CCCCCCCCCCCCCCC, ord("8")) if minus else (0x1999999999999999, ord("5"))
        while s.digit():
            if i64 >= limit and (i64 != limit or s.peek() > last):
                d, use_double = float(i64), True  # integers beyond (u)int64 become doubles
                break
            i64 = i64 * 10 + s.take() - 48
            digits += 1
    if use_double:
        while s.digit():
            if d >= 1.7976931348623157e307:
                raise ParseError("NumberTooBig", start)
            d = d * 10 + (s.take() - 48)
    exp_frac = 0
    if s.consume("."):
        if not s.digit():
            raise ParseError("NumberMissFraction", s.pos)
        if not use_double:
            if not use64:
                i64 = i
            while s.digit() and i64 <= 0x1FFFFFFFFFFFFF:  # 2^53 - 1: the fast path
                i64 = i64 * 10 + s.take() - 48
                exp_frac -= 1
                digits += i64 != 0
            d, use_double = float(i64), True
        while s.digit():
            if digits < 17:
                d = d * 10.0 + (s.take() - 48)
                exp_frac -= 1
                digits += d > 0.0
            else:
                s.take()
    exp = 0
    if s.consume("e") or s.consume("E"):
        if not use_double:
            d, use_double = float(i64 if use64 else i), True
        exp_minus = not s.consume("+") and s.consume("-")
        if not s.digit():
            raise ParseError("NumberMissExponent", s.pos)
        exp = s.take() - 48
        while s.digit():
            exp = exp * 10 + s.take() - 48
            if exp_minus and exp >= 214748364:
                while s.digit():
                    s.take()
            elif not exp_minus and exp > 308 - exp_frac:
                raise ParseError("NumberTooBig", start)
        exp = -exp if exp_minus else exp
    if use_double:
        d = _strtod_normal_precision(d, exp + exp_frac)
        return -d if minus else d
    if nan_or_inf:
        return d
    value = i64 if use64 else i
    return -value if minus else value


def _fast_path(d, p):
    """RJ:internal/strtod.h FastPath: the significand times or over a power of ten from a double table."""
    if p < -308:
        return 0.0
    return d * float(f"1e{p}") if p >= 0 else d / float(f"1e{-p}")


def _strtod_normal_precision(d, p):
    return _fast_path(_fast_path(d, -308), p + 308) if p < -308 else _fast_path(d, p)


# The iterative parser (RJ:reader.h:1406-1851): its states, and the one-token table `Predict`.
START, FINISH, OBJ_INIT, KEY, COLON, MEMBER, MEMBER_COMMA, ARR_INIT, ELEMENT, ELEMENT_COMMA = range(10)
_EXPECT_ERRORS = {START: "DocumentEmpty", OBJ_INIT: "ObjectMissName",
                  MEMBER_COMMA: "ObjectMissName", KEY: "ObjectMissColon",
                  MEMBER: "ObjectMissCommaOrCurlyBracket", COLON: "ValueInvalid",
                  ARR_INIT: "ValueInvalid", ELEMENT_COMMA: "ValueInvalid",
                  ELEMENT: "ArrayMissCommaOrSquareBracket"}  # HandleError, RJ:reader.h:1797-1819
_VALUE_STARTS = {START, COLON, ARR_INIT, ELEMENT_COMMA}


def parse(data):
    """Document::ParseStream with kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag.

    Raises:
        ParseError: as rapidjson fails, at its byte offset.
    """
    s = _Stream(data)
    state, stack, root = START, [], []  # stack: [state to return to, container, pending key]
    _skip_space(s)
    while s.peek() != 0:
        c = bytes([s.peek()])
        if state in _VALUE_STARTS and c in b"[{":
            s.take()
            container = [] if c == b"[" else JsonObject()
            stack.append([ELEMENT if state in (ARR_INIT, ELEMENT_COMMA) else MEMBER, container, None])
            state = ARR_INIT if c == b"[" else OBJ_INIT
        elif state in _VALUE_STARTS and c not in b"]},:":
            _store(stack, root, _value(s))
            state = FINISH if state == START else ELEMENT if state != COLON else MEMBER
        elif state in (OBJ_INIT, MEMBER_COMMA) and c == b'"':
            stack[-1][2] = _string(s)
            state = KEY
        elif state == KEY and c == b":":
            s.take()
            state = COLON
        elif (state in (MEMBER, ELEMENT) and c == b","):
            s.take()
            state = MEMBER_COMMA if state == MEMBER else ELEMENT_COMMA
        elif (state in (OBJ_INIT, MEMBER, MEMBER_COMMA) and c == b"}") or (
                state in (ARR_INIT, ELEMENT, ELEMENT_COMMA) and c == b"]"):
            if state in (MEMBER_COMMA, ELEMENT_COMMA):  # no kParseTrailingCommasFlag
                raise ParseError("ObjectMissName" if c == b"}" else "ValueInvalid", s.pos)
            s.take()
            back, container, _ = stack.pop()
            state = back if stack else FINISH
            _store(stack, root, container)
        else:
            raise ParseError(_EXPECT_ERRORS[state], s.pos)
        if state == FINISH:  # kParseStopWhenDoneFlag: whatever follows the root is never read
            return root[0]
        _skip_space(s)
    raise ParseError(_EXPECT_ERRORS[state], s.pos)


def _store(stack, root, value):
    if not stack:
        root.append(value)
    elif isinstance(stack[-1][1], JsonObject):
        stack[-1][1].append((stack[-1][2], value))
    else:
        stack[-1][1].append(value)


def _value(s):
    """ParseValue (RJ:reader.h:1389-1404) for a non-container value."""
    c = bytes([s.peek()])
    if c == b'"':
        return _string(s)
    words = {b"n": ("null", None), b"t": ("true", True), b"f": ("false", False)}
    return _literal(s, *words[c]) if c in words else _number(s)


def _skip_space(s):
    while s.peek() in b" \n\r\t":
        s.take()
