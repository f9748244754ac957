"""Errors shared by the commands.

Kept apart from cli.py so that `python -m triton_mysql.cli` (which loads the
CLI module a second time as __main__) still catches the same class.
"""


class UserError(Exception):
    """A failure the user can act on: reported in one line, exit code 1."""


class ConfigError(Exception):
    """A mistake in the configuration, reported in one line with exit code 2.

    One class for both configuration worlds: the hooks' environment
    (`config.py`, `key` is a variable such as ``CONSUL``) and the supervisor's
    file (`supervisor/config.py` and its sections, `key` is a path such as ``services[0].poll``).
    The supervisor validates the discovery variables with the hooks' rules, so
    an error from either side reaches its caller unchanged.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
