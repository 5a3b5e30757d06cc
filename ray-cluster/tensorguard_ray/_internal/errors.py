"""What a user reads when a job fails: the first cause, on one line, without terminal colours.

Ray wraps an actor's exception in a RayTaskError whose text is a traceback with ANSI colour codes
around the remote frame's name; the cause a user needs (the Node child's ``DatasetError: <file>:
<line>: ...``) is the wrapped exception's own message. These helpers take that message out.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text)


def one_line(text: str) -> str:
    """``text`` without ANSI codes, its lines joined by "; " (blank lines dropped)."""
    lines = [ln.strip() for ln in strip_ansi(text).splitlines()]
    return "; ".join(ln for ln in lines if ln)


def first_cause(err: BaseException) -> str:
    """The message of the innermost cause of ``err``, on one line: the wrapped exception of a
    RayTaskError (its ``cause``), else the exception's own text. For a traceback-shaped text
    (a cause Ray could not unpickle) the last line, the exception's message, is kept."""
    seen: set[int] = set()
    cause: BaseException = err
    while id(cause) not in seen:
        seen.add(id(cause))
        inner = getattr(cause, "cause", None)
        if isinstance(inner, BaseException) and inner is not cause:
            cause = inner
            continue
        break
    text = strip_ansi(str(cause)).strip()
    if "Traceback (most recent call last)" in text or "\n  File " in text:
        last = [ln.strip() for ln in text.splitlines() if ln.strip()]
        text = last[-1] if last else text
    return one_line(text) or type(cause).__name__
