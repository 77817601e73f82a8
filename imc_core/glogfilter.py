"""Keep COLMAP's INFO and WARNING lines off a process's stderr, whatever glog's level says (and three nameless error
lines the run says better: an EXIF orientation it names the image of, "Stopping thread..." on Ctrl-C, and "Failed
to create any sparse model", said on a cancel too).

``pycolmap.logging.minloglevel = 2`` hides them, except in ``pycolmap.bundle_adjustment`` (the final adjustment,
which releases the GIL): it builds a COLMAP ``OptionManager`` that resets the level for the whole process and prints
two INFO lines per call. :func:`glog_lines_dropped` puts a filter between file descriptor 2 and where it pointed:

    with glog_lines_dropped():
        run_pipeline(...)

The filter is a child process (this file run as a script, standard library only, started with ``-S``), not a
thread: when the parent dies (a failed COLMAP check aborts it), the child still reads what the parent wrote last,
the reason included, passes it on and exits at the end of the pipe. It ignores SIGINT and SIGTERM, which reach a
whole process group (Ctrl-C, the dashboard's cancel), so that it outlives the parent's own handling of them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

#: colour codes glog puts around a line once ``pycolmap.bundle_adjustment`` turned colour on (where ``TERM`` says a
#: terminal has colour): ``\x1b[0;33m`` before a WARNING line, ``\x1b[m`` after its newline, at the next line's start
COLOUR = rb"(?:\x1b\[[0-9;]*m)*"
#: a glog INFO or WARNING line, e.g. ``I20261127 03:25:20.447185 140190974651264 bundle_adjustment.cc:46] ...``,
#: or three nameless ERROR lines the run says better: COLMAP's about an EXIF orientation of none of 1–8 (the run's
#: warning names each such image: :func:`imc_core.images.exif_problems`), pycolmap's "Stopping thread..." when
#: a Ctrl-C reaches it (the run ends cancelled and says so) and COLMAP's "Failed to create any sparse model", which it
#: also prints when a mapping is cancelled (read as a failure), while a real failure is a run warning naming the
#: dataset (or the group of images no model holds)
GLOG_LINE = re.compile(COLOUR + rb"(?:[IW]\d{8} \d\d:\d\d:\d\d\.\d+ +\d+ [^ \]]+:\d+\] "
                       rb"|E\d{8} \d\d:\d\d:\d\d\.\d+ +\d+ [^ \]]+:\d+\] "
                       rb"(?:Unknown EXIF orientation: -?\d+|Stopping thread\.\.\."
                       rb"|Failed to create any sparse model)$)")
_COLOUR_PREFIX = re.compile(COLOUR)
_RESETS = re.compile(rb"(?:\x1b\[0?m)*")
_UNFINISHED_COLOUR = re.compile(rb"\x1b(?:\[[0-9;]*)?")


def _may_become_glog_line(tail: bytes) -> bool:
    """Whether an unfinished line may still turn out to be a glog line (then it waits for its newline)."""
    tail = tail[_COLOUR_PREFIX.match(tail).end():]  # type: ignore[union-attr]  (it matches the empty string)
    if not tail or _UNFINISHED_COLOUR.fullmatch(tail):
        return True
    if tail[:1] not in (b"I", b"W", b"E"):
        return False
    digits = tail[1:9]  # the date
    if digits and not digits.isdigit():
        return False
    return len(digits) < 8 or len(tail) == 9 or tail[9:10] == b" "


def drop_glog_lines(data: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """Filter a chunk of a stream: ``(what to write now, unfinished line kept back)`` after ``tail + data``.

    glog's INFO and WARNING lines go (what ``minloglevel = 2`` hides), and COLMAP's nameless "Unknown EXIF
    orientation" error; everything else passes, an unfinished line
    (a progress line rewritten with carriage returns) at once unless it may still become a glog line.
    """
    *lines, rest = (tail + data).split(b"\n")
    # a dropped line keeps the colour resets it starts with (the end of a kept coloured line before it)
    out = b"".join(line + b"\n" if not GLOG_LINE.match(line) else _RESETS.match(line).group()  # type: ignore[union-attr]
                   for line in lines)
    if rest and not _may_become_glog_line(rest):
        out, rest = out + rest, b""
    return out, rest


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


_CODE = re.compile(rb"\x1b\[([0-9;]*)m")


def drop_stray_resets(data: bytes, colour_open: bool) -> tuple[bytes, bool]:
    """``data`` without the colour resets that close no colour (``colour_open``: whether one is open before it),
    and whether one is open after it. A dropped coloured line leaves its reset at the next line's start: a file that
    stderr went to began with ``ESC[m`` (a terminal shows nothing either way)."""
    out, pos = [], 0
    for code in _CODE.finditer(data):
        reset = code.group(1) in (b"", b"0")
        if reset and not colour_open:
            out.append(data[pos:code.start()])
            pos = code.end()
        colour_open = not reset
    out.append(data[pos:])
    return b"".join(out), colour_open


def filtered(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """What the filter passes of a stream read in ``chunks``: :func:`drop_glog_lines`, then
    :func:`drop_stray_resets`, the last unfinished line at the end."""
    tail, colour_open = b"", False
    for chunk in chunks:
        out, tail = drop_glog_lines(chunk, tail)
        out, colour_open = drop_stray_resets(out, colour_open)
        if out:
            yield out
    if tail:
        last = tail if not GLOG_LINE.match(tail) else _RESETS.match(tail).group()  # type: ignore[union-attr]
        if last := drop_stray_resets(last, colour_open)[0]:
            yield last


def filter_stream(src: int = 0, dst: int = 2) -> None:
    """Copy ``src`` to ``dst`` without glog's INFO and WARNING lines, until the end of ``src``."""
    for out in filtered(iter(lambda: os.read(src, 65536), b"")):
        _write_all(dst, out)


@contextmanager
def glog_lines_dropped() -> Iterator[None]:
    """While inside, glog's INFO and WARNING lines written to file descriptor 2 are dropped; everything else passes,
    unchanged and in order (after a filter process: a few milliseconds late). Nothing is filtered when no child can
    be started or file descriptor 2 is closed."""
    sys.stderr.flush()
    try:
        child = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, close_fds=True)
    except OSError:
        yield
        return
    assert child.stdin is not None
    try:
        saved = os.dup(2)
        os.dup2(child.stdin.fileno(), 2)
    except OSError:
        child.stdin.close()
        child.wait()
        yield
        return
    child.stdin.close()  # fd 2 is now the pipe's only write end in this process
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the filter drains it and exits
        os.close(saved)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":  # the filter process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    filter_stream()
