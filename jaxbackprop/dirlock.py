"""One process at a time in a run (or sweep) directory: a lock taken before anything is checked or written.

The lock is ``fcntl.flock`` on :data:`LOCK_NAME` inside the directory. The kernel releases it when
its process ends, however it ends, so a killed run never leaves a lock that blocks the next one;
the file itself names its holder (pid, host, start time) for the refusal, and is removed on a
clean release. A lock file found with a holder written in it, but not locked, was left by a
process that was killed: it is taken over with a note naming that process.

The lock is re-entrant for the thread that holds it: the command line takes it before the corpus
loads (a refused second process spends nothing), and the library's own call inside is then a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path

LOCK_NAME = ".jaxbackprop-lock"
# (device, inode) of each directory this process holds -> the thread holding it
_HELD: dict[tuple[int, int], int] = {}


class DirectoryInUse(ValueError):
    """Another process holds the directory's lock; the message names the directory and that process."""


@contextlib.contextmanager
def locked(directory, log=print):
    """Hold ``directory`` for this process while the block runs; create it if needed. Re-entrant: a
    thread that holds it already just runs the block.

    Args:
      directory: the run's or sweep's directory (a path that is a file is refused).
      log: called with one line when the lock of a killed process is taken over.

    Raises:
      DirectoryInUse: another process holds the lock (nothing has been written then).
      NotADirectoryError: ``directory`` is a file.

    On leaving, the lock file is removed, and so are the directories this call created if they
    are still empty (a refused run leaves no trace).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory}: exists and is not a directory; choose another --out")
    if _held_here(directory):  # this thread holds it already (the command line took it before loading the corpus)
        yield
        return
    created = _missing_ancestors(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = None
    try:
        fd = _acquire(path)
        left = _holder(fd)
        if left:
            log(f"note: {path}: taking over the lock of {left}, which ended without releasing it (killed?)")
        _write_holder(fd)
        identity = _identity(directory)
        _HELD[identity] = threading.get_ident()
        try:
            yield
        finally:
            del _HELD[identity]
    finally:
        if fd is not None:
            path.unlink(missing_ok=True)  # before the lock goes: a process waiting on this file then retries
            os.close(fd)
        for d in created:  # deepest first; rmdir refuses a directory that is not empty
            with contextlib.suppress(OSError):
                d.rmdir()


def _identity(directory: Path) -> tuple[int, int]:
    st = os.stat(directory)
    return st.st_dev, st.st_ino


def _held_here(directory: Path) -> bool:
    """Whether this thread holds ``directory``'s lock (another thread is refused, as another process is)."""
    return directory.is_dir() and _HELD.get(_identity(directory)) == threading.get_ident()


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock, or DirectoryInUse."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd) or "a process that is starting"
            os.close(fd)
            raise DirectoryInUse(
                f"{path.parent}: in use by another jaxbackprop process ({holder}; lock file {path.name}); "
                f"wait for it to end, or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # the last holder removes the file before releasing it: if it did so after our open, we hold
        # the lock of a file nobody else can see, and must lock the one now at the path instead
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def _holder(fd: int) -> str:
    return os.pread(fd, 500, 0).decode("utf-8", errors="replace").strip()


def _write_holder(fd: int) -> None:
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)


def _missing_ancestors(directory: Path) -> list[Path]:
    """The directories ``mkdir(parents=True)`` would create for ``directory``, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing
