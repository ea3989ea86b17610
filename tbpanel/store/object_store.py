"""The cold tier on object storage (``s3://``, and any other fsspec URL): one file system shared
with Zarr, the few housekeeping calls the cold tier makes, and the claim that ties a cold tier to
the one hot tier whose series ids it stores.

**Publishing a month without rename.** S3 has no rename, and none is needed: a compaction writes
the month's arrays under a prefix no one has used (``<month>/g<N+1>/``, each object durable once
its PUT is acknowledged), and only then commits the SQLite transaction that makes ``g<N+1>`` the
month's generation in the manifest and deletes the moved hot rows. That row is the small
manifest written last: readers take the generation from it (in the same snapshot as the hot
rows), never from a listing, so a half-written prefix is never read, and a crash before the
commit leaves an orphan prefix (removed at the next open) with the points still hot, after it
the superseded prefix. The manifest stays in SQLite rather than in an object beside the data
because the hot tier is the durability: the switch must delete the hot rows in the same
transaction, which no object PUT can join.

**The claim.** A generation stores series *ids*; their ``(entity, key)`` names, the recent points
and the manifest live in the local hot tier. A cold tier is therefore usable only with the hot
tier that wrote it, and another hot tier opening the same URL (``open_store("s3://b/x")`` on a
second machine has an empty local cache) would see every generation as an orphan and delete
it. So the first open writes ``tbpanel-cold.json`` (a random id) at the URL and the same id into
``cold-store.json`` beside ``telemetry.sqlite``; an open whose ids differ is refused
(:class:`ForeignColdTier`) before anything is written or removed.

**Requests.** s3fs's defaults are changed for the ``s3`` protocol (a caller's options win): one
GET per object (``max_concurrency=1``; by default s3fs first asks for the object's size with a
HEAD to split a large object into parallel ranged GETs, doubling the requests for our chunks,
which are at most tens of MB) and no listing cache (another process sharing the data directory
adds and removes generations; a stale listing would make a fresh generation look missing).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from zarr.core.sync import sync
from zarr.storage import FsspecStore

#: the object at the cold tier's root naming the store it belongs to (see "The claim" above)
MARKER = "tbpanel-cold.json"
#: the local file beside telemetry.sqlite that names the cold tier this hot tier claimed
LOCAL_MARKER = "cold-store.json"
#: option names whose values are credentials: never shown (``repr``, logs, error messages)
_SECRET_WORDS = ("secret", "password", "token", "credential", "account_key", "sas", "key")
#: see "Requests" above
DEFAULTS: dict[str, dict[str, Any]] = {
    "s3": {"max_concurrency": 1, "use_listings_cache": False},
    "s3a": {"max_concurrency": 1, "use_listings_cache": False},
}


class ForeignColdTier(FileExistsError):
    """The cold tier at this URL was claimed by another hot tier (another data directory or cache)."""


class StorageOptions(dict[str, Any]):
    """fsspec storage options (``endpoint_url``, ``key``, ``secret``, ...) whose ``repr`` hides the
    credentials: options travel through ``param`` objects and error messages, whose reprs get logged."""

    def __repr__(self) -> str:
        shown = {k: ("***" if is_secret(k) else v) for k, v in self.items()}
        return f"StorageOptions({shown!r})"

    __str__ = __repr__


def is_secret(option: str) -> bool:
    """Whether the value of storage option ``option`` is a credential (never to be shown)."""
    name = option.lower()
    return any(w in name for w in _SECRET_WORDS)


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


class ObjectStore:
    """A cold tier's root on object storage: the Zarr store over it and the listing, existence and
    removal calls of :class:`~tbpanel.store.cold.ColdTier`, all through Zarr's one file system
    instance (on Zarr's event loop), so that they share its connections and never disagree."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        opts = {**DEFAULTS.get(protocol_of(url), {}), **(options or {})}
        self.zarr_store: FsspecStore = FsspecStore.from_url(self.url, storage_options=opts, read_only=False)
        self._fs: Any = self.zarr_store.fs  # an fsspec AsyncFileSystem (untyped)
        self._root = self.zarr_store.path.rstrip("/")

    def __repr__(self) -> str:
        return f"<ObjectStore {self.url}>"  # no options: they may hold credentials

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root

    def exists(self, rel: str) -> bool:
        return bool(sync(self._fs._exists(self._path(rel))))

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the "directories" (common prefixes) directly under ``rel``."""
        try:
            entries = sync(self._fs._ls(self._path(rel), detail=True))
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    def remove(self, rel: str) -> None:
        """Delete one object; a missing one is fine."""
        try:
            sync(self._fs._rm(self._path(rel)))
        except FileNotFoundError:
            pass

    def remove_tree(self, rel: str) -> None:
        """Delete every object under ``rel`` (S3: one listing, one DeleteObjects per 1,000 keys)."""
        try:
            sync(self._fs._rm(self._path(rel), recursive=True))
        except FileNotFoundError:
            pass

    def read_json(self, rel: str) -> Any:
        try:
            return json.loads(sync(self._fs._cat_file(self._path(rel))))
        except FileNotFoundError:
            return None

    def write_json(self, rel: str, value: Any) -> None:
        self.put_many({rel: json.dumps(value).encode()})

    def put_many(self, blobs: Mapping[str, bytes]) -> None:
        """PUT objects (``{relative key: bytes}``), several at a time; raises the first failure."""
        if blobs:
            sync(self._fs._pipe({self._path(k): v for k, v in blobs.items()}))

    # ------------------------------------------------------------------------------ the claim
    def claim(self, hot_dir: str) -> None:
        """Tie this cold tier to the hot tier in ``hot_dir`` (see "The claim" in the module
        docstring); :class:`ForeignColdTier` if another hot tier claimed it first."""
        local_path = os.path.join(hot_dir, LOCAL_MARKER)
        local = _read_local(local_path)
        remote = self.read_json(MARKER)
        # the ids, not the URLs, must agree: a cold tier copied to another bucket is still ours
        mine = local.get("store") if isinstance(local, dict) else None
        theirs = remote.get("store") if isinstance(remote, dict) else None
        if theirs is not None and theirs == mine:
            return
        if theirs is not None:
            raise ForeignColdTier(
                f"{self.url} holds the cold tier of another telemetry store (not the one in {hot_dir}): "
                "its months are readable only with the hot tier that wrote them, and this one would "
                "remove them as orphans. Open it where it was created, or give another URL."
            )
        store_id = mine or uuid.uuid4().hex
        if mine is None:  # local first: a crash before the PUT below is finished by the next open
            _write_local(local_path, {"url": self.url, "store": store_id})
        self.write_json(MARKER, {"format": "tbpanel-cold-1", "store": store_id})


def _read_local(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_local(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
