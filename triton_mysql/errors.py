"""Errors shared by the commands.

Kept apart from cli.py so that `python -m triton_mysql.cli` (which loads the
CLI module a second time as __main__) still catches the same class.
"""


class UserError(Exception):
    """A failure the user can act on: reported in one line, exit code 1."""
