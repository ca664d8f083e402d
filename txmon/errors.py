"""Errors a user can act on: the CLI prints them as one line, not a traceback."""


class UserError(Exception):
    """Something the user can fix (missing java, port in use, bad file): said in one line."""
