"""Atomic writes: a temporary sibling, then a rename.

A crash or a SIGKILL at any moment leaves either the previous file (or
folder) or the new one, never a half-written one. The temporary sibling is
in the same folder, so the rename never crosses file systems.
"""

import contextlib
import json
import os
import shutil
import tempfile


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path, mode):
    # mkstemp/mkdtemp create 0600/0700 entries; a finished file or export
    # should have the permissions any other file the user writes gets.
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~_umask())


def write_bytes(path, data):
    """Writes `data` to `path` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        public_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, **kwargs):
    kwargs.setdefault("indent", 2)
    write_text(path, json.dumps(obj, **kwargs) + "\n")


@contextlib.contextmanager
def atomic_dir(path, overwrite=False):
    """Yields a temporary sibling folder that becomes `path` on success.

    On an exception the temporary folder is removed and `path` is left as it
    was. With `overwrite=True` an existing `path` is replaced: it is first
    renamed aside, so a crash between the two renames leaves the old folder
    under `.{name}.old-*`, never a partial one at `path`; it is renamed to
    `.{name}.del-*` before it is removed.

    Raises:
        ValueError: `path` exists and `overwrite` is False.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"The target exists; pass overwrite=True (--overwrite) to replace it. "
                         f"Received: path={path!r}")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
        public_mode(tmp, 0o777)
        _fsync_dir(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            # Renamed again before it is removed: a kill during the removal
            # leaves `.{name}.del-*`, which is never mistaken for a whole
            # folder to put back (`.old-*` is only ever whole).
            trash = os.path.join(parent, os.path.basename(old).replace(".old-", ".del-", 1))
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_keras(model, path):
    """Saves a Keras model to the `.keras` file `path` atomically.

    Temporaries of a save that a kill interrupted (`.NAME.*.keras`, never
    complete models) are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    for name in os.listdir(folder):
        if name.startswith(f".{os.path.basename(path)}.") and name.endswith(".keras"):
            os.unlink(os.path.join(folder, name))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".keras", dir=folder)
    os.close(fd)
    try:
        model.save(tmp)
        public_mode(tmp, 0o666)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
