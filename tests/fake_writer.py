"""rapidjson 1.1.0's PrettyWriter, as TensorFlow Serving writes JSON (util/json_tensor.cc).

Answers, error bodies and the JSON quoted in messages (JsonValueToDebugString) all come from
rapidjson::PrettyWriter: 4-space indents, Grisu2 doubles, raw UTF-8 strings. Rules cite rapidjson's
headers as RJ:<file> (include/rapidjson/ at tag v1.1.0); values are fake_json's.
"""

import struct

from fake_json import JsonObject


def _cached_power(index):
    """GetCachedPowerByIndex (RJ:internal/diyfp.h): 10^(8 * index - 348) as a normalized 64-bit DiyFp."""
    k = 8 * index - 348
    if k >= 0:
        e = (10**k).bit_length() - 64
        return ((10**k + (1 << e - 1)) >> e, e) if e > 0 else (10**k << -e, e)
    den = 10**-k
    s = 63 + den.bit_length()
    return ((1 << s) + den // 2) // den, -s


def _multiply(a, b):
    """DiyFp::operator* (RJ:internal/diyfp.h), rounded on bit 63 of the low half."""
    product = a[0] * b[0]
    return (product >> 64) + (product >> 63 & 1), a[1] + b[1] + 64


def _normalize(f, e, top=63):
    shift = top + 1 - f.bit_length()
    return f << shift, e - shift


def _grisu2(value):
    """Grisu2 (RJ:internal/dtoa.h:126-236): (digits, K) with value ~= digits * 10^K."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    biased, f = bits >> 52 & 0x7FF, bits & (1 << 52) - 1
    f, e = (f + (1 << 52), biased - 1075) if biased else (f, -1074)
    plus = _normalize((f << 1) + 1, e - 1, top=53)
    plus = (plus[0] << 10, plus[1] - 10)  # NormalizeBoundary
    minus = ((f << 2) - 1, e - 2) if f == 1 << 52 else ((f << 1) - 1, e - 1)
    minus = (minus[0] << (minus[1] - plus[1]), plus[1])
    dk = (-61 - plus[1]) * 0.30102999566398114 + 347
    k = int(dk) + (dk - int(dk) > 0.0)
    index = (k >> 3) + 1
    cached, big_k = _cached_power(index), -(-348 + (index << 3))
    w = _multiply(_normalize(f, e), cached)
    wp, wm = _multiply(plus, cached), _multiply(minus, cached)
    wp, wm = (wp[0] - 1, wp[1]), (wm[0] + 1, wm[1])
    return _digit_gen(w, wp, wp[0] - wm[0], big_k)


def _digit_gen(w, mp, delta, big_k):
    """DigitGen and GrisuRound (RJ:internal/dtoa.h), in 64-bit unsigned arithmetic."""
    mask, one_e = (1 << 64) - 1, -mp[1]
    one = 1 << one_e
    wp_w = mp[0] - w[0]
    p1, p2 = mp[0] >> one_e, mp[0] & (one - 1)
    buffer = []
    kappa = min(len(str(p1)), 9)  # CountDecimalDigit32
    while kappa > 0:
        d, p1 = divmod(p1, 10 ** (kappa - 1))
        if d or buffer:
            buffer.append(d)
        kappa -= 1
        rest = (p1 << one_e) + p2
        if rest <= delta:
            return _round(buffer, delta, rest, 10**kappa << one_e, wp_w), big_k + kappa
    while True:
        p2, delta = p2 * 10 & mask, delta * 10 & mask
        d = p2 >> one_e
        if d or buffer:
            buffer.append(d)
        p2 &= one - 1
        kappa -= 1
        if p2 < delta:
            factor = 10**-kappa if -kappa < 9 else 0
            return _round(buffer, delta, p2, one, wp_w * factor & mask), big_k + kappa


def _round(buffer, delta, rest, ten_kappa, wp_w):
    while rest < wp_w and delta - rest >= ten_kappa and (
            rest + ten_kappa < wp_w or wp_w - rest > rest + ten_kappa - wp_w):
        buffer[-1] -= 1
        rest += ten_kappa
    return "".join(map(str, buffer))


def dtoa(value):
    """internal::dtoa with Prettify (RJ:internal/dtoa.h), maxDecimalPlaces 324: `1.0`, `1e-7`, `1e21`."""
    if value == 0:
        return "-0.0" if str(value)[0] == "-" else "0.0"
    if value < 0:
        return "-" + dtoa(-value)
    digits, k = _grisu2(value)
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        return digits + "0" * k + ".0"
    if 0 < kk <= 21:
        return digits[:kk] + "." + digits[kk:]
    if -6 < kk <= 0:
        return "0." + "0" * -kk + digits
    exponent = ("e" + str(kk - 1))
    return digits + exponent if length == 1 else digits[0] + "." + digits[1:] + exponent


def _escape(raw):
    """Writer::WriteString: `"`, `\\` and bytes below 0x20 escaped (`\\u00XX` upper case), the rest raw."""
    named = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r", 0x22: b'\\"',
             0x5C: b"\\\\"}
    out = bytearray(b'"')
    for c in raw:
        out += named.get(c) or (b"\\u00%02X" % c if c < 0x20 else bytes([c]))
    return bytes(out + b'"')


class Writer:
    """PrettyWriter<StringBuffer>: 4-space indents; `single_line_arrays` is kFormatSingleLineArray.

    `limit` makes it JsonWriterWithLimit (json_tensor.cc:177-223): every event is refused (returns
    False, writing nothing) once the buffer holds `limit` bytes or more.
    """

    def __init__(self, single_line_arrays=False, limit=None):
        self.out, self.levels = bytearray(), []  # levels: [in_array, value_count]
        self.single_line_arrays, self.limit = single_line_arrays, limit

    def _open(self):
        return self.limit is None or len(self.out) < self.limit

    def _prefix(self):
        if not self.levels:
            return
        level = self.levels[-1]
        if level[0]:
            if level[1]:
                self.out += b", " if self.single_line_arrays else b","
            if not self.single_line_arrays:
                self.out += b"\n" + b" " * 4 * len(self.levels)
        else:
            self.out += (b",\n" if level[1] % 2 == 0 else b": ") if level[1] else b"\n"
            if level[1] % 2 == 0:
                self.out += b" " * 4 * len(self.levels)
        level[1] += 1

    def scalar(self, value):
        """Null, Bool, Int..Uint64, Double (NaN and infinities refused: no kWriteNanAndInfFlag), String."""
        if not self._open():
            return False
        self._prefix()
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return False
            self.out += dtoa(value).encode()
        elif isinstance(value, bytes):
            self.out += _escape(value)
        else:
            self.out += {None: b"null", True: b"true", False: b"false"}.get(value, None) if (
                value is None or isinstance(value, bool)) else str(value).encode()
        return True

    def raw(self, text):
        """RawValue: `text` as it is, after the separator."""
        self._prefix()
        self.out += text.encode()
        return True

    def start(self, array):
        if not self._open():
            return False
        self._prefix()
        self.levels.append([array, 0])
        self.out += b"[" if array else b"{"
        return True

    def end(self):
        if not self._open():
            return False
        array, count = self.levels.pop()
        if count and not (array and self.single_line_arrays):
            self.out += b"\n" + b" " * 4 * len(self.levels)
        self.out += b"]" if array else b"}"
        return True

    def accept(self, value):
        """GenericValue::Accept: the value's events, stopping at the first one refused."""
        if isinstance(value, list):
            objects = isinstance(value, JsonObject)
            if not self.start(not objects):
                return False
            for item in value:
                if not (self.scalar(item[0]) and self.accept(item[1]) if objects else self.accept(item)):
                    return False
            return self.end()
        return self.scalar(value)

    def text(self):
        """The buffer as text; bytes that are not UTF-8 survive as surrogate escapes."""
        return self.out.decode("utf-8", "surrogateescape")


def debug_string(value):
    """JsonValueToDebugString (json_tensor.cc:225-236): single-line arrays, cut at 256 bytes."""
    writer = Writer(single_line_arrays=True, limit=256)
    writer.accept(value)
    return writer.text()
