"""Ingest limits: how many keys one device may have, how many points one message may carry.

Why they exist: a valid message costs the writer in proportion to its size, and every key a
device has costs memory (latest values, series index) and every page that lists keys. Without a
bound, one misbehaving device (a firmware that puts a counter into the key name) grows its key
set without end. Both limits are answered like any other rejected payload -- the whole message
refused, nothing of it stored -- with an error that names the limit and how to raise it:

==========================  ================  =====================  ===========
limit                       HTTP              MQTT 5 reason code     CoAP
==========================  ================  =====================  ===========
points per message          413 Payload Too   0x95 Packet too large  4.13
                            Large
keys per device             400 Bad Request   0x97 Quota exceeded    4.00
==========================  ================  =====================  ===========

(a message over the point limit is too large as such, like one over the body-size limit, which is
413 too; the key limit is a quota of the device, which the message would overrun however it was
cut up. MQTT 3.1.1 has no reason codes: the session is closed, as for any bad payload.)

The key limit is checked on the writer thread against the store's in-memory series index
(:class:`KeyQuota`), so it costs a dict lookup per point and no SQL, and two concurrent messages
cannot both squeeze under it. The point limit is checked by the transports right after parsing
(:func:`check_points`), before the store sees anything.
"""

from __future__ import annotations

from collections.abc import Callable

from .ingest import Batch, PointColumns, series_of, telemetry_columns
from .payload import PayloadError

#: Defaults of ``tbpanel serve --max-keys-per-device`` / ``--max-points-per-message``.
DEFAULT_MAX_KEYS_PER_DEVICE = 10_000
DEFAULT_MAX_POINTS_PER_MESSAGE = 100_000


class LimitExceeded(PayloadError):
    """A message refused by an ingest limit; ``status``/``mqtt_reason``/``coap`` say how to answer."""

    status = 400
    mqtt_reason = 0x97  # quota exceeded
    limit = ""

    def __init__(self, message: str, value: int):
        super().__init__(message)
        self.value = value


class TooManyPoints(LimitExceeded):
    status = 413
    mqtt_reason = 0x95  # packet too large
    limit = "max-points-per-message"


class TooManyKeys(LimitExceeded):
    status = 400
    mqtt_reason = 0x97  # quota exceeded
    limit = "max-keys-per-device"


def check_points(count: int, limit: int | None) -> None:
    """Raise :class:`TooManyPoints` when a message of ``count`` points is over ``limit`` (None: no limit)."""
    if limit is not None and count > limit:
        raise TooManyPoints(
            f"the message has {count} points, over the limit of {limit} points per message "
            f"(tbpanel serve --max-points-per-message); nothing was stored",
            limit,
        )


class KeyQuota:
    """The per-entity key limit, checked on the writer thread before a commit group is written.

    ``ids`` is the store's ``(entity, key) -> series id`` map and ``count(entity)`` the number of
    series the entity has (both of the series index, current on the writer thread). A series
    counts until its entity is deleted: deleting a key's data keeps its series (ids are never
    reused), so it is still one of the device's keys.
    """

    def __init__(self, limit: int | None, ids: dict[tuple[str, str], int], count: Callable[[str], int]) -> None:
        self.limit = limit
        self._ids = ids
        self._count = count

    def checker(self) -> Callable[[Batch], TooManyKeys | None]:
        """A check for the batches of one commit group, in order: the new keys of the batches
        it admitted count for the ones after them."""
        limit, ids, count = self.limit, self._ids, self._count
        added: dict[str, set[str]] = {}

        def check(points: Batch) -> TooManyKeys | None:
            if limit is None:
                return None
            mine: dict[str, set[str]] = {}
            for e, k in series_of(points):
                if (e, k) in ids:
                    continue
                before = added.get(e)
                if before is not None and k in before:
                    continue
                s = mine.get(e)
                if s is None:
                    mine[e] = {k}
                else:
                    s.add(k)
            for e, ks in mine.items():
                have = count(e) + len(added.get(e, ()))
                if have + len(ks) > limit:
                    return TooManyKeys(
                        f"device {e} has {have} keys; the message adds {len(ks)} new ones, over the limit of "
                        f"{limit} keys per device (tbpanel serve --max-keys-per-device); nothing was stored",
                        limit,
                    )
            for e, ks in mine.items():
                added.setdefault(e, set()).update(ks)
            return None

        return check


#: Bodies at least this large are parsed off the event loop by the transports that can (HTTP):
#: parsing 300 KB of new keys takes tens of ms, in which the loop would serve nobody else.
OFF_LOOP_BYTES = 64 << 10


def telemetry_points(entity: str, body: bytes, server_ts: int, max_points: int | None) -> PointColumns:
    """A device's telemetry body to validated store points, as columns (:mod:`.ingest`: the
    typing rules and messages of :mod:`.payload` and :mod:`.validate`), then the point limit.
    Raises :class:`PayloadError` (:class:`TooManyPoints` for the limit)."""
    return telemetry_columns(entity, body, server_ts, lambda n: check_points(n, max_points))


def mqtt_reason(exc: BaseException, qos: int) -> int | None:
    """The MQTT 5 reason code for a refused publish, when an ingest limit refused it (else None).
    0x95 (packet too large) is not a PUBACK/PUBREC code: an acknowledged publish over the point
    limit gets 0x97 (quota exceeded) there, as one over the payload-size limit does."""
    if not isinstance(exc, LimitExceeded):
        return None
    return exc.mqtt_reason if qos == 0 else 0x97
