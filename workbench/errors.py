"""Errors that describe bad user input; the CLI and the UI show their message, never a traceback."""


class UserInputError(ValueError):
    """Base class: the message names the problem and what to do about it."""
