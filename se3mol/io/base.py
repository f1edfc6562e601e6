"""What every format reader of :mod:`se3mol.io` shares: the :class:`Parsed` record a reader hands back, lazy
parsing, reading text (:func:`open_text`, :func:`open_stdin`), the leniency rules for names, and reading a value.

Nothing here reads a format; :mod:`se3mol.io.records` drives the readers and numbers their records.

Text is read the same way from every source (a file, stdin, a stream handed in):

- gzip is told by its first two bytes (``1f 8b``), whatever the file is called, and decompressed on the fly;
- bytes that are not UTF-8 are read as U+FFFD (a record whose chemistry has one is an error record; a title or
  name with one is kept, and the record's notes say so: :func:`clean_name`), a leading byte-order mark is
  dropped;
- a line ends at LF, a CRLF counts as LF, and a file whose first block has CRs but no LF is read with CR as the
  line end (classic Mac). Nothing else ends a line: U+0085, U+2028, U+2029, form feeds and a lone CR are
  characters within the line (``str.splitlines()`` would split on them, so readers never use it);
- a file whose first block is mostly NUL bytes, control characters and bytes that are not UTF-8 (and has
  control characters, or no line end in its first KiB) is binary data, not text (:class:`NotTextError`): one
  error record for the whole file rather than one per line of noise. Text in a legacy 8-bit encoding is text;
  NUL bytes or bytes that are not UTF-8 further on make only the records they are in error records.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from se3mol.molecule import Molecule

__all__ = [
    "GZIP_MAGIC", "READ_ERRORS", "LazyParsed", "NotTextError", "Parsed", "TextLines", "clean_name", "extension",
    "is_text", "number_or_text", "open_stdin", "open_text", "os_error_message", "plain_value", "read_error_message",
    "ready", "text_problem",
]

#: The first two bytes of gzip data, whatever the file is called.
GZIP_MAGIC = b"\x1f\x8b"
# How much of a source is looked at to tell gzip, binary data and CR-only line ends (one read: a pipe is not
# waited on for more than it has).
_SNIFF_BYTES = 8192
# A first block with more than this share of NUL bytes, control characters and bytes that are not UTF-8 is binary
# data, not text, if it also has a NUL or control character or no line end in its first _ONE_LINE bytes: text in
# a legacy 8-bit encoding (names in Latin-1 or cp1251) has neither, and is read as text.
_BINARY_SHARE = 0.3
_ONE_LINE = 1024


@dataclass
class Parsed:
    """What a format reader hands back for one record; read_records numbers, names and validates it."""

    name: str = ""
    molecule: Molecule | None = None
    error: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    perceive_smiles: bool = False
    input_smiles: str = ""  # the SMILES as the input gave it (SMILES files and CSV tables)


#: A delimited record, parsed only when called: records of other shards are never parsed.
LazyParsed = Callable[[], Parsed]


def ready(parsed: Parsed) -> LazyParsed:
    """A record already parsed (an error found while delimiting it), in the lazy form readers yield."""
    return lambda: parsed


# ASCII characters that str.isprintable() rejects, less tab and line ends.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same in a name, where a line end has no business either (it would break an output row or a terminal line).
_NAME_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_text(text: str) -> bool:
    """No undecodable bytes (read as U+FFFD) and no control characters other than tabs and line ends."""
    if text.isascii():  # the usual case, checked in C rather than character by character
        return _ASCII_CONTROL.search(text) is None
    return "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text)


def text_problem(text: str) -> str | None:
    """What makes ``text`` (chemistry: atom lines, counts) not text, in words; ``None`` when it is text.

    Unlike :func:`is_text`, characters beyond ASCII that are printable or are separators (U+0085, U+2028) pass:
    the readers say more precisely where plain ASCII is needed.

    >>> text_problem("C 0.0 0.0\\x00\\x00"), text_problem("caf\\ufffd"), text_problem("O 0 0 0\\n")
    ('NUL bytes', 'bytes that are not UTF-8', None)
    """
    if "\x00" in text:
        return "NUL bytes"
    if "\ufffd" in text:
        return "bytes that are not UTF-8"
    if control := _ASCII_CONTROL.search(text):
        return f"the control character U+{ord(control[0]):04X}"
    return None


def clean_name(raw: str) -> tuple[str, list[str]]:
    """A record's title or name as an id, read leniently: names are names, not chemistry.

    Leading and trailing whitespace and every U+FEFF (a byte-order mark, e.g. where files that start with one were
    concatenated) are dropped; ASCII control characters (NUL, BEL, ESC, CR, ...; not tab) become U+FFFD, as bytes
    that are not UTF-8 already are when read. Other characters, U+0085 and U+2028 included, stay as they are. A
    name that is more than half U+FFFD is binary data, not a name: ``""``, so that the id falls back to
    ``<source>:<n>``. Returns the name and notes saying what was done.

    >>> clean_name("\\ufeff caf\\ufffd au lait\\x07 ")[0]
    'caf\ufffd au lait\ufffd'
    >>> clean_name("caf\\ufffd au lait\\x07")[1]
    ['name: 1 byte sequence(s) that are not UTF-8 and 1 control character(s) shown as U+FFFD']
    >>> clean_name("ethanol")
    ('ethanol', [])
    """
    name = raw.replace("\ufeff", "").strip()
    if name.isascii() and _NAME_CONTROL.search(name) is None:
        return name, []  # the usual case
    n_undecodable = name.count("\ufffd")
    name, n_control = _NAME_CONTROL.subn("\ufffd", name)
    if 2 * name.count("\ufffd") > len(name):
        return "", ["name dropped: it is not text (binary data?)"]
    shown = [f"{n_undecodable} byte sequence(s) that are not UTF-8" if n_undecodable else "",
             f"{n_control} control character(s)" if n_control else ""]
    if not any(shown):
        return name, []
    return name, [f"name: {' and '.join(s for s in shown if s)} shown as U+FFFD"]


def extension(path: str) -> str:
    """The lower-cased extension of ``path`` with a trailing ``.gz`` looked through: ``a.SDF.gz`` -> ``.sdf``."""
    stem = path[:-3] if path.lower().endswith(".gz") else path
    return os.path.splitext(stem)[1].lower()


# --------------------------------------------------------------------------------------------------------
# Reading text
# --------------------------------------------------------------------------------------------------------


class NotTextError(ValueError):
    """A source that is binary data, not text (told from its first block)."""


#: What reading a text source may raise besides bad data in it: I/O errors, gzip data cut short or corrupt, and
#: binary data. :func:`read_error_message` says each in words.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, NotTextError)


class TextLines(Iterator[str]):
    """The lines of a text source, read as this module's docstring says: each ends in ``"\\n"`` (the last may end
    in nothing), and the first has no byte-order mark. Close it (or use ``with``) when done; ``stream`` is the text
    stream underneath, for a reader that needs a file object (ASE).
    """

    def __init__(self, stream: Any, line_end: str = "\r\n", close: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self._lines = iter(stream)
        self._end = line_end  # what becomes "\n": CRLF, or CR in a CR-only file
        self._first = True
        self._close = close

    def __iter__(self) -> TextLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if line.endswith(self._end):
            line = line[: -len(self._end)] + "\n"
        return line

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_text(path: str | os.PathLike[str]) -> TextLines:
    """Open a file for reading as text lines: plain or gzip (told by its first bytes, whatever its name), UTF-8.

    Raises:
        OSError: if the file cannot be opened or read.
        EOFError, zlib.error: if its gzip data is cut short or corrupt within the first block.
        NotTextError: if it is binary data, not text.
    """
    fh = open(path, "rb")
    try:
        return _decode(fh, fh.close)
    except BaseException:
        fh.close()
        raise


def open_stdin(stream: IO[Any] | Iterable[str] | None = None) -> TextLines:
    """The lines of stdin, read as a file is (:func:`open_text`): ``sys.stdin`` (``stream=None``) through its bytes,
    so that gzip is told and undecodable bytes are read as for files. A binary ``stream`` is read the same way; a
    text one (e.g. ``io.StringIO``, or lines read ahead and handed out again) as it is, less a byte-order mark and
    CRs before line ends. Closing the lines leaves the stream open.

    Raises:
        the errors of :func:`open_text` (:data:`READ_ERRORS`), from the first block read here.
    """
    if stream is None:
        stream = sys.stdin
        if stream is None:
            raise OSError("there is no stdin to read (it is closed)")
        stream = getattr(stream, "buffer", stream)  # sys.stdin's bytes, not its locale's decoding
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return _decode(stream, None)
    return TextLines(stream)


def _decode(binary: Any, close: Callable[[], None] | None) -> TextLines:
    """Text lines of a binary stream: gzip, binary data and CR-only line ends told from its first block."""
    read = getattr(binary, "read1", None) or binary.read
    head = read(_SNIFF_BYTES)
    while 0 < len(head) < len(GZIP_MAGIC):  # a pipe may hand out one byte at a time
        more = read(_SNIFF_BYTES)
        if not more:
            break
        head += more
    data: Any = io.BufferedReader(_Rewound(head, binary))
    sample = head
    if head.startswith(GZIP_MAGIC):
        data = gzip.GzipFile(fileobj=data, mode="rb")
        sample = data.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    if problem := _binary_problem(sample):
        raise NotTextError(f"the file is not text but binary data: {problem}")
    cr_only = b"\n" not in sample and b"\r" in sample[:-1]  # a lone last CR may be half of a CRLF
    text = io.TextIOWrapper(data, encoding="utf-8", errors="replace", newline="\r" if cr_only else "\n")

    def close_all() -> None:
        text.close()
        if close is not None:
            close()

    return TextLines(text, "\r" if cr_only else "\r\n", close_all)


def _binary_problem(sample: bytes) -> str | None:
    """Why the first block of a source says it is binary data, or ``None`` for text."""
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it starts with a UTF-16 byte-order mark (UTF-16 text? save it as UTF-8)"
    text = sample.decode("utf-8", errors="replace")
    one_line = len(sample) >= _ONE_LINE and b"\n" not in sample and b"\r" not in sample
    if not (_ASCII_CONTROL.search(text) or one_line):
        return None
    noise = text.count("\ufffd") + len(_ASCII_CONTROL.findall(text))
    if noise <= _BINARY_SHARE * len(text):
        return None
    share = f"{100 * noise / len(text):.0f}%"
    return f"{share} of its first {len(sample)} bytes are NUL bytes, control characters or not UTF-8"


class _Rewound(io.RawIOBase):
    """A binary stream whose first bytes were read ahead (to look at them) and are handed out again first.

    Closing it leaves the stream underneath open: that may be stdin.
    """

    def __init__(self, head: bytes, rest: Any) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest
        self._read = getattr(rest, "read1", None) or rest.read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_error_message(exc: BaseException) -> str:
    """Why a source could not be read (further), in words: one of :data:`READ_ERRORS`."""
    if isinstance(exc, EOFError):  # only gzip raises it when reading
        return ("the gzip data is cut short: the file ends inside the compressed stream (an incomplete download "
                "or copy?)")
    if isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        return f"corrupt gzip data ({exc})"
    if isinstance(exc, NotTextError):
        return str(exc)
    return os_error_message(exc)


def os_error_message(exc: BaseException) -> str:
    """An I/O error as a short message: its reason and the file it names."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def number_or_text(text: str) -> Any:
    """``text`` as a ``float`` where it reads as a number, else unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def plain_value(value: Any) -> Any:
    """numpy scalars as Python numbers, so properties print and serialise plainly."""
    return value.item() if isinstance(value, np.generic) else value
