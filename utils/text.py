"""Text that every writer can encode: file and folder names read from disk may hold bytes that
are not UTF-8, which Python keeps as lone surrogates ('\\udcff') that no UTF-8 file accepts."""
import re

SURROGATE = re.compile('[\ud800-\udfff]')


def _escape(match):
    code = ord(match.group())
    if 0xdc80 <= code <= 0xdcff:  # an undecodable byte, as os.listdir's surrogateescape keeps it
        return f'\\x{code - 0xdc00:02x}'
    return f'\\u{code:04x}'


def visible_text(text):
    """`text` with each undecodable byte written as `\\xNN` (as Python's backslashreplace does):
    the same name always gives the same visible text, which encodes anywhere."""
    return SURROGATE.sub(_escape, str(text))
