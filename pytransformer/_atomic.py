"""Atomic file writes, shared by checkpoints and corpus files.

A write goes to a temporary file in the target's directory, named
``.<target name>.<writer pid>.<random>.tmp``, which is then os.replace'd
onto the target. A writer killed before the replace (SIGKILL, power loss)
leaves its temporary behind; the next write to the same target removes the
temporaries whose writer is gone: its pid is not a live process here, and
no one holds the exclusive flock every writer keeps on its temporary until
the replace (so a writer in another pid namespace or on another host
sharing the directory is not disturbed).
"""
import os
import re

try:
    import fcntl
except ImportError:   # not POSIX: no locks; stale temporaries are left alone
    fcntl = None

__all__ = ["atomic_write"]

_TEMP_TAIL = re.compile(r"\.([1-9][0-9]{0,9})\.[0-9a-f]{12}\.tmp")


def _fsync_dir(directory):
    """fsync a directory so a rename in it is durable (best effort: some
    platforms and file systems cannot open or fsync directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid):
    """Whether a process with this pid exists (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stale_temporaries(directory, prefix):
    """Remove the temporaries named prefix + _TEMP_TAIL in `directory` whose
    writer is gone (pid not alive, file not locked). Best effort: errors
    (a file removed meanwhile, no permission) are ignored."""
    if fcntl is None:
        return
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if e.name.startswith(prefix)]
    except OSError:
        return
    me = os.getpid()
    for name in names:
        m = _TEMP_TAIL.fullmatch(name, len(prefix) - 1)
        if m is None or int(m.group(1)) == me or _pid_alive(int(m.group(1))):
            continue
        tmp = os.path.join(directory, name)
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)


def atomic_write(path, chunks):
    """Write the byte chunks (an iterable of buffers) to `path` atomically:
    a temporary file in the same directory, flushed and fsync'd, then
    os.replace onto `path` and a best-effort fsync of the directory. On any
    exception (KeyboardInterrupt included) the temporary file is removed and
    a previous file at `path` is left as it was. Temporaries of earlier
    writers to `path` that were killed mid-write are removed first (see the
    module docstring)."""
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    prefix = f".{base[:100]}."
    _remove_stale_temporaries(directory, prefix)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = os.path.join(directory, f"{prefix}{os.getpid()}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)   # mode 0o666 & ~umask, as open() gives
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{path}: could not create a temporary file in {directory}")
    try:
        try:
            if fcntl is not None:   # held until the replace: marks the writer as live
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:   # a file system without locks: cleaners cannot lock either
                    pass
            with open(fd, "wb", closefd=False) as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
