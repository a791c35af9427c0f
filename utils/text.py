"""Text that every writer can encode: file and folder names read from disk may hold bytes that
are not UTF-8, which Python keeps as lone surrogates ('\\udcff') that no UTF-8 file accepts.

Paths are written with printable_path (lossless: path_from_printable reads the same path back);
other text (cluster names, messages) with visible_text, which only escapes undecodable bytes."""
import os
import re
import reprlib

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


def printable_path(path):
    r"""A path (or any name from the file system) as text that every output can hold, and that
    path_from_printable turns back into the same path: each byte that is not part of printable
    UTF-8 text (a byte that is not UTF-8; a newline or other control, formatting or unusual space
    character) is written as \xNN, and a backslash as \\. Ordinary names are unchanged."""
    path = os.fsdecode(path)  # str or bytes
    if path.isprintable() and '\\' not in path:  # nearly every path: nothing to escape
        return path
    text = os.fsencode(path).decode('utf-8', 'surrogateescape')
    out = []
    for char in text:
        if char == '\\':
            out.append('\\\\')
        elif char.isprintable():  # False for control, format and undecodable (surrogate) chars
            out.append(char)
        else:
            out.extend(f'\\x{byte:02x}' for byte in char.encode('utf-8', 'surrogateescape'))
    return ''.join(out)


def path_from_printable(text):
    """The path that printable_path wrote as `text`."""
    def unescape(match):
        return b'\\' if match[2] is None else bytes([int(match[2], 16)])
    return os.fsdecode(re.sub(rb'\\(\\|x([0-9a-f]{2}))', unescape, text.encode('utf-8')))


def printable_relpath(path, folder):
    """A path under folder as it is printed and listed: relative to folder, printable."""
    return printable_path(os.path.relpath(path, folder))


def plural(count, singular, plural_form=None):
    """'1 cluster', '3 clusters', '1,200 images'."""
    word = singular if count == 1 else (plural_form or singular + 's')
    return f"{count:,} {word}"


# A name made only of these is blank (spaces of every kind, controls, invisible marks): one
# definition, written as a regular expression class that Python and the gallery's JavaScript
# (gallery-data.js carries it) read alike.
BLANK_CLASS = ('[\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u180e\\u2000-\\u200f\\u2028-\\u202f'
               '\\u205f-\\u2064\\u3000\\ufeff]')
_BLANK = re.compile(f'{BLANK_CLASS}*')


def is_blank(text):
    return _BLANK.fullmatch(text) is not None


def ascii_number(text):
    """int of a text of ASCII digits only (str.isdigit also accepts '²', which int refuses);
    None for anything else."""
    return int(text) if re.fullmatch('[0-9]{1,18}', text) else None


_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 3, 80, 80, 40
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = _EXCERPT.maxset = 4
EXCERPT_LENGTH = 160


def excerpt(value):
    """repr(value) cut to a bounded size and depth (a YAML alias bomb has no printable repr)."""
    try:
        text = _EXCERPT.repr(value)
    except ValueError:  # an int of over 4,300 digits has no repr
        return f"an integer of {value.bit_length():,} bits"
    return text if len(text) <= EXCERPT_LENGTH else text[:EXCERPT_LENGTH - 3] + '...'

