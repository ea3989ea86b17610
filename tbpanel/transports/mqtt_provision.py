"""MQTT device provisioning: a session whose CONNECT username (or client id) is ``provision``
is a provision-only session, as in ThingsBoard's ``MqttTransportHandler``.

Such a session is accepted without credentials and may do only this: subscribe to
``/provision/response`` (any other filter is refused), publish the JSON request on
``/provision/request`` (any other topic ends the session), and read the answer, which is the
same JSON as the HTTP route's (:mod:`tbpanel.entities.provisioning`), published on
``/provision/response`` right after the PUBACK. ThingsBoard closes the session 60 s after its
answer; tbpanel closes it :data:`LINGER_S` after, long enough for the client to read it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from ..entities.provisioning import NOT_FOUND, provision_device
from . import mqtt_codec as c

if TYPE_CHECKING:
    from .mqtt import _Session

log = logging.getLogger("tbpanel.mqtt")

PROVISION_USERNAME = "provision"
REQUEST_TOPIC = "/provision/request"
RESPONSE_TOPIC = "/provision/response"
LINGER_S = 60.0


def is_provision(connect: c.Connect) -> bool:
    """Whether this CONNECT opens a provision-only session."""
    return PROVISION_USERNAME in (connect.username, connect.client_id)


async def serve(session: _Session, connect: c.Connect) -> None:
    """Run a provision-only session on ``session``'s connection until it ends."""
    level = session.level
    await session.send_now(c.connack(level, 0, {c.PROP_RETAIN_AVAILABLE: 0, c.PROP_WILDCARD_AVAILABLE: 0}))
    log.info("MQTT %s: provisioning session", session.peer)
    timeout = connect.keepalive * 1.5 if connect.keepalive else LINGER_S
    answered = False
    while True:
        try:
            first, body = await asyncio.wait_for(session.read_packet(), LINGER_S if answered else timeout)
            packet = c.parse_packet(first, body, level)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        except c.MalformedPacket as exc:
            log.info("MQTT %s: provisioning session: malformed packet: %s", session.peer, exc)
            return
        except Exception as exc:  # Rejected (too large) and the like: end the session
            log.info("MQTT %s: provisioning session closed: %s", session.peer, exc)
            return
        if isinstance(packet, c.Subscribe):
            refused = c.V5_NOT_AUTHORIZED if level == c.MQTT_5 else 0x80
            codes = [min(opts & 0x03, 1) if filt == RESPONSE_TOPIC else refused for filt, opts in packet.topics]
            await session.write(c.suback(level, packet.packet_id, codes))
        elif isinstance(packet, c.Unsubscribe):
            await session.write(c.unsuback(level, packet.packet_id, len(packet.topics)))
        elif isinstance(packet, c.Publish):
            if packet.topic != REQUEST_TOPIC:
                log.info("MQTT %s: provisioning session: publish on %r refused", session.peer, packet.topic)
                if level == c.MQTT_5:
                    if packet.qos and packet.packet_id is not None:
                        await session.write(c.puback(level, packet.packet_id, c.V5_TOPIC_NAME_INVALID))
                    await session.write(c.disconnect(level, c.V5_TOPIC_NAME_INVALID, "provision-only session"))
                return
            answer = await _answer(session, packet.payload)
            data = b""
            if packet.qos and packet.packet_id is not None:
                ptype = c.PUBACK if packet.qos == 1 else c.PUBREC
                data += c.puback(level, packet.packet_id, ptype=ptype)
            data += c.publish(level, RESPONSE_TOPIC, orjson.dumps(answer))
            await session.write(data)
            answered = True
        elif packet.type == c.PUBREL:
            assert packet.packet_id is not None
            await session.write(c.puback(level, packet.packet_id, ptype=c.PUBCOMP))
        elif packet.type == c.PINGREQ:
            await session.write(c.pingresp())
        elif packet.type == c.DISCONNECT:
            return


async def _answer(session: _Session, payload: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(payload)
    except orjson.JSONDecodeError:
        log.info("MQTT %s: provisioning request is not JSON", session.peer)
        return dict(NOT_FOUND)
    return await session.in_executor(provision_device, session.platform.registry, request)
