"""Errors a user can act on. The CLI prints their message without a traceback."""


class DistillError(Exception):
    """A problem with the user's input or environment, stated so they can fix it."""


class ConfigError(DistillError):
    pass


class BudgetExhausted(DistillError):
    """The configured token or cost budget is spent; finished work is kept."""


class TeacherError(DistillError):
    """The teacher could not answer (unreachable endpoint, retries exhausted, ...)."""


def os_error_message(e: OSError, path: object = None) -> str:
    """One line for an OSError a user can act on, naming the path (``path`` when the error
    itself names none, as a failed write() does)."""
    import errno

    where = e.filename if e.filename is not None else path
    where = f" {where}" if where is not None else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while writing{where}. Finished work is kept; free some space and rerun the same "
                f"command to resume.")
    if e.errno == errno.ENOTDIR:
        return f"cannot write{where}: part of that path is a file, not a folder; choose another output folder"
    if e.errno == errno.EEXIST:
        return f"cannot make the folder{where}: a file of that name is in the way; choose another output folder"
    if e.errno == errno.EROFS:
        return f"cannot write{where}: the file system is read-only; choose an output folder on a writable disk"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write{where}: permission denied"
    return f"{e.strerror or e}{':' + where if where else ''}"


def ensure_dir(path, field: str) -> None:
    """Make the output folder ``path`` (config field ``field``), or fail in one line naming both."""
    from pathlib import Path

    import tempfile

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # an existing folder on a read-only disk passes mkdir
            pass
    except OSError as e:
        if e.filename is None or not str(e.filename).startswith(str(path)):
            e.filename = str(path)
        raise DistillError(f"{field}: {os_error_message(e)}") from None
