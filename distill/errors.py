"""Errors a user can act on. The CLI prints their message without a traceback."""


class DistillError(Exception):
    """A problem with the user's input or environment, stated so they can fix it."""


class ConfigError(DistillError):
    pass


class BudgetExhausted(DistillError):
    """The configured token or cost budget is spent; finished work is kept."""


class TeacherError(DistillError):
    """The teacher could not answer (unreachable endpoint, retries exhausted, ...)."""
