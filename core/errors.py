"""One exception type for every mistake a user can make; the CLI prints its message as one line."""


class VoxcError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""
