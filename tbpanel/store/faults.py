"""Storage faults: errors that mean "the disk refused the write", not "the code is wrong".

A full disk, a read-only file system, an exhausted quota or a file-size limit reach tbpanel
either as an ``OSError`` (Zarr, plain files) or as an ``sqlite3.OperationalError`` (SQLite
reports ENOSPC as SQLITE_FULL and any other failed write as SQLITE_IOERR_WRITE).
:func:`storage_fault` recognises both so that the API can answer 507 Insufficient Storage with
a message instead of a bare 500. Nothing is half-written in any of these cases: SQLite rolls the
transaction back, and a cold generation is only used once its manifest row commits.
"""

from __future__ import annotations

import errno
import sqlite3

#: errno -> what the client is told
OS_FAULTS = {
    errno.ENOSPC: "no space left on the server's storage",
    errno.EROFS: "the server's storage is read-only",
    errno.EDQUOT: "the server's storage quota is exhausted",
    errno.EFBIG: "a file of the server's storage reached its size limit",
}
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full" (ENOSPC)
_SQLITE_READONLY = 8  # SQLITE_READONLY and its extended codes
_SQLITE_IOERR_WRITE = 778  # a write(2) failed for another reason (EROFS, EDQUOT, EFBIG, EIO)
_SQLITE_IOERR_FSYNC = 1034


def storage_fault(exc: BaseException) -> str | None:
    """Why storage refused a write, for the client; ``None`` if ``exc`` is not a storage fault."""
    if isinstance(exc, OSError) and exc.errno in OS_FAULTS:
        return f"{OS_FAULTS[exc.errno]}; nothing was stored, retry later"
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return None
        if code & 0xFF == _SQLITE_FULL:
            what = OS_FAULTS[errno.ENOSPC]
        elif code & 0xFF == _SQLITE_READONLY:
            what = OS_FAULTS[errno.EROFS]
        elif code in (_SQLITE_IOERR_WRITE, _SQLITE_IOERR_FSYNC):
            what = "the server's storage refused a write (disk I/O error)"
        else:
            return None
        return f"{what}; nothing was stored, retry later"
    return None
