"""The base class of every error that describes a problem with the user's input, files or
machine rather than a bug: the scripts print its message and exit 1, without a traceback."""


class UserError(Exception):
    """A problem the user can fix; the message says what and where."""
