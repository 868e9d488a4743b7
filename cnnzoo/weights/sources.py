"""Where a weights file comes from: the publisher's cache, a download, or a local path.

keras.applications' files go through `keras.utils.get_file` (its progress
bar, the Keras cache `$KERAS_HOME/models`, the MD5 keras.applications
checks); timm's through `huggingface_hub.hf_hub_download` (its progress bar,
its cache under `$HF_HOME`, `HF_HUB_OFFLINE` honoured). Nothing is
downloaded unless a set is asked for and missing from its cache.
"""

import hashlib
import os

from cnnzoo import _validation as v


def file_hash(path, algorithm="md5"):
    """The hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_cache_dir():
    """The Keras cache folder, as `keras.utils.get_file` resolves it (`$KERAS_HOME` or `~/.keras`)."""
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return home


def keras_file(url, md5):
    """A keras.applications file from the Keras cache, downloaded there if missing.

    Args:
        url: the file's origin (keras.applications' URL; `file://` works).
        md5: the MD5 keras.applications checks, or `None` where it checks none.

    Returns:
        The local path.

    Raises:
        ValueError: one line, when the file is cached with another hash
            (both hashes; the file is not used), or cannot be downloaded
            (the URL, and the exact path where to put the file by hand).
    """
    import keras

    fname = url.rsplit("/", 1)[-1]
    cache = keras_cache_dir()
    # get_file falls back to /tmp/.keras when the cache folder does not exist yet.
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "models", fname)
    if os.path.exists(path) and md5 is not None:
        found = file_hash(path, "md5")
        if found != md5:
            v.fail(f"The cached weights file {path} has MD5 {found}, not the {md5} that "
                   f"keras.applications publishes for {url}: it is not used. Delete it to "
                   f"download it again.", "md5", found)
    try:
        return keras.utils.get_file(fname, url, cache_subdir="models", file_hash=md5,
                                    hash_algorithm="md5", cache_dir=cache)
    except ValueError as e:
        if "hash" not in str(e):
            raise
        found = file_hash(path, "md5") if os.path.exists(path) else "unknown"
        v.fail(f"The downloaded {url} has MD5 {found}, not the published {md5}: it is not "
               f"used.", "md5", found)
    except Exception as e:  # noqa: BLE001  (urllib's errors, wrapped by Keras)
        v.fail(f"Could not download the weights from {url} ({type(e).__name__}). Without a "
               f"network, copy that file to {path}.", "url", url)


def hub_cache_dir():
    """The Hugging Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`), as huggingface_hub."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hub_file(hub_id, filename="model.safetensors"):
    """A file of a Hugging Face hub repository, from its cache or downloaded into it.

    The hub checks the file against the SHA-256 it publishes (the LFS
    `etag`) as it downloads; `HF_HUB_OFFLINE=1` reads the cache only.

    Returns:
        The local path.

    Raises:
        ValueError: one line, when the file is neither cached nor
            downloadable: the hub id, and the path where a copy is found
            without a network.
    """
    import huggingface_hub

    try:
        return huggingface_hub.hf_hub_download(hub_id, filename)
    except Exception as e:  # noqa: BLE001  (offline, no network, missing entry)
        # A copy put by hand under snapshots/main (no refs/main): the hub's own
        # cache lookup resolves the revision "main" to that folder.
        cached = huggingface_hub.try_to_load_from_cache(hub_id, filename)
        if isinstance(cached, str) and os.path.isfile(cached):
            return cached
        folder = "models--" + hub_id.replace("/", "--")
        path = os.path.join(hub_cache_dir(), folder, "snapshots", "main", filename)
        v.fail(f"Could not get {filename} of the Hugging Face hub repository {hub_id} "
               f"({type(e).__name__}). Without a network, download "
               f"https://huggingface.co/{hub_id}/resolve/main/{filename} elsewhere and copy it "
               f"to {path}.", "hub_id", hub_id)
