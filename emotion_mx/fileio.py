"""Atomic file writes: a file either appears whole under its final name or not at all."""
import contextlib
import errno
import json
import os
import tempfile

from .errors import EmotionMXError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    The temporary name keeps the extension, so writers that append one (``np.savez``)
    or check it (``cv2.imwrite``) work unchanged.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise EmotionMXError(f"{path} is a folder; give the path of a file to write")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    except OSError as e:      # the folder is read-only or full: name the file asked for
        raise OSError(e.errno, e.strerror, path) from None
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.filename in (tmp, os.path.abspath(tmp)):   # the temporary file is ours, not the user's
            raise OSError(e.errno, e.strerror, path) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path, obj, indent=2):
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path, rows):
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path):
    from .errors import EmotionMXError
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise EmotionMXError(f"{path}:{lineno}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise EmotionMXError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or remove that line") from None
            except RecursionError:
                raise EmotionMXError(f"{path}:{lineno}: JSON nested too deeply") from None
    return rows


def ensure_output_dir(path, what="--out"):
    """Create output folder ``path`` (and parents) or raise one line saying why it cannot be used:
    it is a file, lies under a file, or is not writable.  Every tool that writes a folder calls
    this before its work starts, so the failure comes before hours of computing."""
    from .errors import EmotionMXError
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise EmotionMXError(f"{what} {path} exists and is not a folder; give a folder path")
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise EmotionMXError(f"{what} {path}: a part of that path is a file, not a folder") from None
    except NotADirectoryError:
        raise EmotionMXError(f"{what} {path}: a part of that path is a file, not a folder") from None
    except OSError as e:
        raise EmotionMXError(f"{what} {path} cannot be created ({os_reason(e)})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EmotionMXError(f"{what} {path} is not writable; choose another folder or fix its permissions")
    return path


def os_reason(e):
    """A short reason for an OSError, with what to do for the common environment failures."""
    hints = {errno.ENOSPC: "disk full: free space or write elsewhere",
             errno.EDQUOT: "disk quota exceeded: free space or write elsewhere",
             errno.EROFS: "read-only file system: write elsewhere",
             errno.EACCES: "permission denied: fix the permissions or write elsewhere",
             errno.EPERM: "operation not permitted: fix the permissions or write elsewhere",
             errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EISDIR: "is a folder, a file was expected"}
    return hints.get(e.errno, e.strerror or str(e))


ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                      errno.EISDIR)
