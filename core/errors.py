"""One exception type for every mistake a user can make; the CLI prints its message as one line."""


class VoxcError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


FIRST_LINE_LIMIT = 300


def first_line(exc: BaseException, limit: int = FIRST_LINE_LIMIT) -> str:
    """The first line of an exception's message, cut to `limit` characters ("" when it says nothing):
    how every report, record and one-line error quotes an exception."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""
