"""Atomic file writes, shared by checkpoints and corpus files."""
import os

__all__ = ["atomic_write"]


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


def atomic_write(path, chunks):
    """Write the byte chunks (an iterable of buffers) to `path` atomically:
    a temporary file in the same directory, flushed and fsync'd, then
    os.replace onto `path` and a best-effort fsync of the directory. On any
    exception (KeyboardInterrupt included) the temporary file is removed and
    a previous file at `path` is left as it was."""
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = os.path.join(directory, f".{base[:100]}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)   # mode 0o666 & ~umask, as open() gives
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{path}: could not create a temporary file in {directory}")
    try:
        with open(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
