"""What the compat modules share: the error a changed library internal raises.

Each library's private APIs are reached through one module of its own
(`cnnzoo._compat_keras`, `cnnzoo._compat_tensorflow`,
`tuning._compat_keras_tuner`), each with contracts its tests check; a
contract that fails raises `LibraryChangedError`, naming the internal and
the installed version of the library.
"""

from importlib import metadata


class LibraryChangedError(RuntimeError):
    """A library internal cnnzoo relies on is not what it was."""


def version(package):
    """The installed version of distribution `package` (`"unknown"` if not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def changed(library, package, what, written_for, module, error=LibraryChangedError):
    """The `error` that says `library`'s `what` is not as `module` expects."""
    return error(
        f"cnnzoo relies on {library}'s {what}, which {package} {version(package)} does not "
        f"have as expected (written against {written_for}). Install a {package} version "
        f"that setup.cfg allows, or update {module}.")
