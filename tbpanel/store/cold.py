"""Zarr v3 cold tier: one immutable Zarr group per (UTC month, generation).

Layout under the cold root (a local directory by default, or an fsspec URL such as
``s3://bucket/fleet/cold``: :mod:`.object_store`)::

    2024-03/g000002/          one generation of the month 2024-03 (a Zarr v3 group;
                              chunk files are named c.0, c.1, ... beside each zarr.json)
        ts      int64   sorted by (series, ts)
        t       int8    ValueType code
        num     float64 bool/long/double value as a float (NaN for text) - fast aggregation
        lng     int64   exact long value (0 elsewhere)
        txt     string  STR/JSON text ("" elsewhere); only when the month has text points
        series  int64   sorted distinct series ids of the partition          (index)
        offsets int64   n+1 row offsets: series[i] is rows offsets[i]:offsets[i+1] (index)

At a URL, the group's ``zarr.json`` carries every array's metadata too (Zarr's consolidated
metadata), so opening a generation is one GET, not seven: on S3 a month's query is that GET
and one per chunk of each column it reads (see README "Cold tier on S3"). Locally the seven
small reads cost less than consolidating at every write.

Arrays are written whole, once (a chunk is up to ``chunk_rows`` rows; how each array is
encoded — delta-of-delta timestamps, values as exact scaled decimals where they are, Blosc — is
``store/encoding.py``; zstd for text), and never modified: a rewrite of a month is a new generation directory, and
which generation is current is decided by the manifest row in SQLite, committed in the same
transaction that deletes the moved hot rows. So a directory that is not in the manifest is
either unfinished or superseded and can be removed.

Reads go through :class:`Partition`, which caches the opened arrays and the decoded index,
and an LRU of decoded numeric *chunks* (and of text slices) keyed by ``(month, generation,
column, …)`` (a new generation never hits a stale entry).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.codecs import ZstdCodec
from zarr.core.buffer import Buffer
from zarr.core.chunk_key_encodings import ChunkKeyEncodingParams

from . import encoding
from .columns import Columns
from .object_store import ObjectStore

log = logging.getLogger(__name__)
# consolidated metadata (one read opens a generation) is Zarr-Python's, like the numcodecs
# filters (store/encoding.py): said once here rather than on every generation written
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

COLUMNS = ("ts", "t", "num", "lng", "txt")
DTYPES = {"ts": np.int64, "t": np.int8, "num": np.float64, "lng": np.int64}
FORMAT = "tbpanel-cold-1"
# chunk files sit next to each array's zarr.json ("c.0", "c.1", ...): no per-array chunk
# directory, so a generation is one directory per column instead of two
_CKE: ChunkKeyEncodingParams = {"name": "default", "separator": "."}
_NAME_RE = re.compile(r"^\d{4}-\d{2}$")
_GEN_RE = re.compile(r"^g(\d+)$")


def gen_dir(name: str, gen: int) -> str:
    return f"{name}/g{gen:06d}"


#: ``(month, generation, column, lo, hi)``: one decoded slice of a column
SliceKey = tuple[str, int, str, int, int]


class SliceCache:
    """Thread-safe LRU of decoded numpy arrays, bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[SliceKey, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: SliceKey) -> np.ndarray | None:
        with self._lock:
            arr = self._d.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key: SliceKey, arr: np.ndarray) -> None:
        size = arr.nbytes if arr.dtype != object else arr.nbytes * 8
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            self._d[key] = arr
            self._bytes += size
            while self._bytes > self.max_bytes and self._d:
                _, ev = self._d.popitem(last=False)
                self._bytes -= _size(ev)

    def evict(self, name: str, gen: int) -> None:
        with self._lock:
            for k in [k for k in self._d if k[0] == name and k[1] == gen]:
                self._bytes -= _size(self._d.pop(k))

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0


def _size(arr: np.ndarray) -> int:
    return arr.nbytes if arr.dtype != object else arr.nbytes * 8


class Partition:
    """An open, immutable cold generation: array handles, decoded index, cached slices."""

    def __init__(self, cold: ColdTier, name: str, gen: int) -> None:
        self.name = name
        self.gen = gen
        self._cache = cold.cache
        group = zarr.open_group(cold.store, path=gen_dir(name, gen), mode="r", zarr_format=3)
        self.attrs = dict(group.attrs)
        self.rows = int(self.attrs.get("rows", 0))  # type: ignore[arg-type]  # JSON: an int here
        self.has_txt = bool(self.attrs.get("has_txt", False))
        # how each array is stored (store/encoding.py); absent in generations written before it
        self.encodings: dict[str, Any] = dict(self.attrs.get("encodings") or {})  # type: ignore[arg-type]  # JSON: a dict here
        self._group = group
        self._arrays: dict[str, Any] = {}  # opened on first use
        self.series = np.asarray(self._array("series")[:], dtype=np.int64)
        self.offsets = np.asarray(self._array("offsets")[:], dtype=np.int64)
        self.series.flags.writeable = False
        self.offsets.flags.writeable = False

    def _array(self, col: str) -> Any:
        a = self._arrays.get(col)
        if a is None:
            try:
                a = self._arrays[col] = self._group[col]
            except KeyError:  # zarr's way of saying the array's metadata file is gone
                raise FileNotFoundError(f"{gen_dir(self.name, self.gen)}/{col}") from None
        return a

    def locate(self, sid: int) -> tuple[int, int] | None:
        """Row range of series ``sid`` in this partition, or ``None``."""
        i = int(np.searchsorted(self.series, sid))
        if i == len(self.series) or self.series[i] != sid:
            return None
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def read(self, col: str, lo: int, hi: int) -> np.ndarray:
        """Decoded rows ``lo:hi`` of a column. Missing ``txt`` reads as ``None``s.

        Numeric columns are cached as whole decoded chunks: Zarr decodes a chunk whole
        whatever slice is asked for, so a query over many series of one chunk decodes it once,
        and a slice is a read-only view into it."""
        if hi <= lo:
            return np.empty(0, dtype=object if col == "txt" else DTYPES[col])
        if col == "txt":
            key = (self.name, self.gen, col, lo, hi)
            arr = self._cache.get(key)
            if arr is not None:
                return arr
            if not self.has_txt:
                arr = np.full(hi - lo, None, dtype=object)
            else:
                arr = np.asarray(self._array("txt")[lo:hi]).astype(object)
            arr.flags.writeable = False
            self._cache.put(key, arr)
            return arr
        size = int(self._array(col).chunks[0])
        first, last = lo // size, (hi - 1) // size
        parts = [
            self._chunk(col, i, size)[max(lo - i * size, 0) : min(hi - i * size, size)] for i in range(first, last + 1)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _chunk(self, col: str, i: int, size: int) -> np.ndarray:
        """Chunk ``i`` of a numeric column, decoded (cached under the column's ``@chunk`` name)."""
        key = (self.name, self.gen, col + "@chunk", i, 0)
        arr = self._cache.get(key)
        if arr is None:
            raw = self._array(col)[i * size : min((i + 1) * size, self.rows)]
            arr = np.asarray(encoding.decode(col, raw, self.encodings), dtype=DTYPES[col])
            arr.flags.writeable = False
            self._cache.put(key, arr)
        return arr

    def read_all(self) -> Columns:
        """Every row of every column (for a rewrite); not cached. Series ids per row included."""
        out: Columns = {}
        for col in ("ts", "t", "num", "lng"):
            out[col] = np.asarray(encoding.decode(col, self._array(col)[:], self.encodings), dtype=DTYPES[col])
        if self.has_txt:
            out["txt"] = np.asarray(self._array("txt")[:]).astype(object)
        else:
            out["txt"] = None
        out["series"] = np.repeat(self.series, np.diff(self.offsets))
        return out


class ColdTier:
    """The cold store: writing generations, opening them (cached), removing them."""

    def __init__(
        self,
        location: str,
        *,
        chunk_rows: int = 1_000_000,
        cache_bytes: int = 256 << 20,
        compressor: str = "zstd",
        fsync: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``location``: a directory or an fsspec URL; ``storage_options``: the URL's file system
        options (``endpoint_url``, ``key``, ``secret``, ...; never logged)."""
        self.location = location
        self.fsync = fsync
        self.chunk_rows = int(chunk_rows)
        self.cache = SliceCache(cache_bytes)
        self._parts: dict[tuple[str, int], Partition] = {}
        self._lock = threading.Lock()
        if compressor not in ("lz4", "zstd"):
            raise ValueError("compressor must be 'lz4' or 'zstd'")
        self._cname = compressor
        self._codec = encoding.blosc(compressor)
        self._txt_codec = ZstdCodec(level=3)
        self._objects: ObjectStore | None = None  # the URL's root (s3://, memory://, ...)
        self.store: Store
        if _is_url(location):
            self._objects = ObjectStore(location, storage_options)
            self.local = False
            self._root = location
            self.store = self._objects.zarr_store
        else:
            path = location[len("file://") :] if location.startswith("file://") else location
            self._root = os.path.abspath(path)
            self.local = True
            os.makedirs(self._root, exist_ok=True)
            self.store = zarr.storage.LocalStore(self._root)

    # -- writing
    def write_generation(
        self,
        name: str,
        gen: int,
        data: Columns,
        series: np.ndarray,
        offsets: np.ndarray,
        extra_attrs: dict[str, Any] | None = None,
    ) -> None:
        """Write one complete generation; durable (fsynced, unless ``fsync=False``) on return."""
        n = len(data["ts"])
        chunk = max(1, min(self.chunk_rows, n))
        has_txt = data.get("txt") is not None
        path = gen_dir(name, gen)
        num, record, num_filters, num_codec = encoding.encode_num(
            np.ascontiguousarray(data["num"], np.float64), self._cname
        )
        attrs = {
            "format": FORMAT,
            "partition": name,
            "generation": gen,
            "rows": n,
            "series_count": int(len(series)),
            "has_txt": has_txt,
            "encodings": {"ts": {"kind": "delta-of-delta"}, "num": record},
            **(extra_attrs or {}),
        }
        # at a URL the generation is made in memory and uploaded whole (see _upload): Zarr would
        # look at every parent group (a GET and a HEAD each) before every array it creates
        staged: dict[str, Buffer] | None = None if self._objects is None else {}
        target: Store = self.store if staged is None else zarr.storage.MemoryStore(staged)
        group = zarr.open_group(target, path=path, mode="w", zarr_format=3, attributes=attrs)
        for col in ("ts", "t", "lng"):
            arr = np.ascontiguousarray(data[col], dtype=DTYPES[col])
            filters = encoding.timestamp_filters() if col == "ts" else []
            group.create_array(
                col, data=arr, chunks=(chunk,), filters=filters, compressors=[self._codec], chunk_key_encoding=_CKE
            )
        group.create_array(
            "num", data=num, chunks=(chunk,), filters=num_filters, compressors=[num_codec], chunk_key_encoding=_CKE
        )
        if has_txt:
            txt = data["txt"]
            missing = np.equal(txt, None)  # type: ignore[call-overload]  # elementwise; the stubs refuse None
            txt = np.where(missing, "", txt).astype(np.dtypes.StringDType())
            group.create_array("txt", data=txt, chunks=(chunk,), compressors=[self._txt_codec], chunk_key_encoding=_CKE)
        ichunk = max(1, min(self.chunk_rows, len(offsets)))
        group.create_array(
            "series",
            data=np.ascontiguousarray(series, dtype=np.int64),
            chunks=(ichunk,),
            compressors=[self._codec],
            chunk_key_encoding=_CKE,
        )
        group.create_array(
            "offsets",
            data=np.ascontiguousarray(offsets, dtype=np.int64),
            chunks=(ichunk,),
            compressors=[self._codec],
            chunk_key_encoding=_CKE,
        )
        if staged is not None:
            zarr.consolidate_metadata(target, path=path, zarr_format=3)  # one GET opens it
            self._upload(path, staged)
        if self.local and self.fsync:
            _fsync_tree(os.path.join(self._root, path))
            _fsync_dir(os.path.join(self._root, name))
            _fsync_dir(self._root)

    def _upload(self, path: str, staged: dict[str, Buffer]) -> None:
        """PUT a generation made in memory: its arrays concurrently, its group ``zarr.json`` (the
        one :meth:`exists` looks for) last. Durable when each PUT is acknowledged."""
        assert self._objects is not None
        group_key = f"{path}/zarr.json"
        blobs = {k: v.to_bytes() for k, v in staged.items() if k.startswith(f"{path}/") and k != group_key}
        self._objects.put_many(blobs)
        self._objects.put_many({group_key: staged[group_key].to_bytes()})

    # -- reading
    def open(self, name: str, gen: int) -> Partition:
        key = (name, gen)
        p = self._parts.get(key)
        if p is None:
            with self._lock:
                p = self._parts.get(key)
                if p is None:
                    p = Partition(self, name, gen)
                    self._parts[key] = p
        return p

    def evict(self, name: str, gen: int) -> None:
        with self._lock:
            self._parts.pop((name, gen), None)
        self.cache.evict(name, gen)

    def clear_cache(self) -> None:
        """Forget decoded slices (keeps array handles and indexes)."""
        self.cache.clear()

    def forget_all(self) -> None:
        with self._lock:
            self._parts.clear()
        self.cache.clear()

    # -- housekeeping
    def claim(self, hot_dir: str) -> None:
        """A cold tier at a URL is usable only with the hot tier that wrote it: see
        :meth:`.object_store.ObjectStore.claim` (a local one lives in its hot tier's directory)."""
        if self._objects is not None:
            self._objects.claim(hot_dir)

    def exists(self, name: str, gen: int) -> bool:
        rel = f"{gen_dir(name, gen)}/zarr.json"
        if self._objects is not None:
            return self._objects.exists(rel)
        return os.path.exists(os.path.join(self._root, rel))

    def list_generations(self) -> list[tuple[str, int]]:
        out = []
        for name in self._listdir(""):
            if not _NAME_RE.match(name):
                continue
            for g in self._listdir(name):
                m = _GEN_RE.match(g)
                if m:
                    out.append((name, int(m.group(1))))
        return sorted(out)

    def remove(self, name: str, gen: int) -> None:
        """Delete a generation. Its group ``zarr.json`` goes first, so that a reader in another
        process can tell (:meth:`exists`) that chunks it just read may have been missing."""
        self.evict(name, gen)
        rel = gen_dir(name, gen)
        if self._objects is not None:
            self._objects.remove(f"{rel}/zarr.json")
        else:
            try:
                os.unlink(os.path.join(self._root, rel, "zarr.json"))
            except FileNotFoundError:
                pass
        self._rmtree(rel)

    def remove_empty_month_dirs(self, keep: set[str]) -> None:
        if self._objects is not None:
            return  # object storage has no empty directories: a prefix exists while objects do
        for name in self._listdir(""):
            if _NAME_RE.match(name) and name not in keep:
                if not any(_GEN_RE.match(g) for g in self._listdir(name)):
                    self._rmtree(name)

    def _listdir(self, rel: str) -> list[str]:
        if self._objects is not None:
            return self._objects.list_dirs(rel)
        try:
            return sorted(e.name for e in os.scandir(os.path.join(self._root, rel)) if e.is_dir())
        except FileNotFoundError:
            return []

    def _rmtree(self, rel: str) -> None:
        if self._objects is not None:
            self._objects.remove_tree(rel)
        else:
            shutil.rmtree(os.path.join(self._root, rel), ignore_errors=True)


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


_FSYNC_POOL: ThreadPoolExecutor | None = None
_FSYNC_LOCK = threading.Lock()


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """fsync every file and directory under ``root``.

    The calls run on a few threads at once: the filesystem groups concurrent fsyncs into
    fewer journal commits, which makes a generation's ~30 fsyncs several times faster.
    """
    global _FSYNC_POOL
    files: list[str] = []
    dirs: list[str] = []
    for dirpath, _dirs, names in os.walk(root):
        files.extend(os.path.join(dirpath, f) for f in names)
        dirs.append(dirpath)
    with _FSYNC_LOCK:
        if _FSYNC_POOL is None:
            _FSYNC_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tbpanel-fsync")
        pool = _FSYNC_POOL
    list(pool.map(_fsync_file, files))
    list(pool.map(_fsync_dir, dirs))
