"""Rule chains: ThingsBoard's ``RuleChainController`` routes, and tbpanel's extras for what
a chain did (debug events, node counters, dead letters) under ``/api/tbpanel/``.

As in ThingsBoard, every route is for tenant administrators (customer users: 403). A chain
or node id of another tenant is 404 (the chain store never finds another tenant's chain).
Bodies and answers are ThingsBoard's JSON (``RuleChain``, ``RuleChainMetaData``, PageData);
a chain using node types tbpanel does not implement is a 400 naming each of them.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..entities import User
from ..platform import Platform
from ..rules.debug_log import debug_log
from ..rules.engine import DebugEvent, NodeCounters, RunResult
from ..rules.message import TbMsg
from ..rules.tenant_rules import TenantRules
from .base import ID, MAX_PAGE, ApiError, ApiHandler, Route, page_data
from .entities import TENANT_ADMIN, entity_uuid

#: ``sortProperty`` values of ``GET /api/ruleChains`` → the chain's sort key
SORTS = {
    "name": lambda c: c.title.lower(),
    "root": lambda c: c.root,
    "createdTime": None,  # the store's order (creation, root first) is kept
}


def counters_json(c: NodeCounters) -> dict[str, Any]:
    return {
        "received": c.received,
        "failures": c.failures,
        "relations": dict(c.relations),
        "lastError": c.last_error,
        "lastTs": c.last_ts,
    }


def debug_in_json(e: DebugEvent) -> dict[str, Any]:
    """A debug event as ThingsBoard's debug-event body (``/api/ruleNode/{id}/debugIn``)."""
    return {
        "type": e.kind,
        "entityId": e.node_id,
        "msgId": e.msg.id,
        "msgType": e.msg.type,
        "dataType": "JSON",
        "relationType": e.relation,
        "data": orjson.dumps(e.msg.data).decode(),
        "metadata": orjson.dumps(dict(e.msg.metadata)).decode(),
        "error": e.error,
    }


def run_json(result: RunResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "ended": [
            {
                "ruleChainId": e.chain_id,
                "ruleNodeId": e.node_id,
                "nodeName": e.node_name,
                "relationType": e.relation,
                "error": e.msg.metadata.get("error") if e.relation == "Failure" else None,
                "msg": e.msg.to_json(),
            }
            for e in result.ended
        ],
    }


class RuleChainHandlerBase(ApiHandler):
    """Every rule chain route: a tenant administrator's :class:`TenantRules`."""

    def rules(self) -> TenantRules:
        user: User = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        assert user.tenant_id is not None  # a tenant administrator has a tenant
        return TenantRules(self.platform.rules, user.tenant_id)

    def chain_id(self, raw: Any) -> str:
        return entity_uuid(raw, "ruleChainId")


class RuleChainSaveHandler(RuleChainHandlerBase):
    """``POST /api/ruleChain``: ``{name, type: CORE}`` creates an empty chain; with ``id`` it
    updates name, debug mode, configuration and additionalInfo."""

    async def post(self) -> None:
        rules = self.rules()
        body = self.json_object("rule chain")
        if (body.get("type") or "CORE") != "CORE":
            raise ApiError(400, f"rule chain type {body.get('type')!r} is not supported (tbpanel runs CORE chains)")
        if body.get("id"):
            chain = await self.in_thread(rules.update, self.chain_id(body["id"]), body)
        else:
            info = body.get("additionalInfo")
            if info is not None and not isinstance(info, dict):
                raise ApiError(400, "additionalInfo must be a JSON object")
            chain = await self.in_thread(
                lambda: rules.create(body.get("name"), debug_mode=bool(body.get("debugMode")), additional_info=info)
            )
        self.write_json(chain.chain_json())


class DefaultRuleChainHandler(RuleChainHandlerBase):
    """``POST /api/ruleChain/device/default`` ``{name}``: a chain from the default root template."""

    async def post(self) -> None:
        rules = self.rules()
        body = self.json_object("default rule chain request")
        chain = await self.in_thread(rules.create_default, body.get("name"))
        self.write_json(chain.chain_json())


class RuleChainMetadataSaveHandler(RuleChainHandlerBase):
    """``POST /api/ruleChain/metadata[?updateRelated]``: replace a chain's graph; answers the saved metadata."""

    async def post(self) -> None:
        rules = self.rules()
        body = self.json_object("rule chain metadata")
        if body.get("ruleChainId") is None:
            raise ApiError(400, "ruleChainId is required")
        chain = await self.in_thread(rules.save_metadata, self.chain_id(body["ruleChainId"]), body)
        self.write_json(chain.metadata_json())


class TestScriptHandler(RuleChainHandlerBase):
    """``POST /api/ruleChain/testScript[?scriptLang=JS]``: ``{script, scriptType, argNames,
    msg, metadata, msgType}`` → ``{output, error}``."""

    async def post(self) -> None:
        rules = self.rules()
        lang = (self.get_query_argument("scriptLang", None) or "JS").upper()
        if lang not in ("JS", "TBEL"):
            raise ApiError(400, f"scriptLang must be JS or TBEL, got {lang!r}")
        body = self.json_object("test script")
        script, script_type = body.get("script"), body.get("scriptType")
        if not isinstance(script, str) or not isinstance(script_type, str):
            raise ApiError(400, "script and scriptType are required strings")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ApiError(400, "metadata must be a JSON object")
        args = body.get("argNames")
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise ApiError(400, "argNames must be an array of strings")
        msg_type = body.get("msgType") or "POST_TELEMETRY_REQUEST"
        if not isinstance(msg_type, str):
            raise ApiError(400, "msgType must be a string")
        trial = await self.in_thread(
            lambda: rules.try_script(
                script, script_type, msg=body.get("msg"), metadata=metadata, msg_type=msg_type, arg_names=args
            )
        )
        self.write_json(trial.to_json())


class TbelEnabledHandler(RuleChainHandlerBase):
    """``GET /api/ruleChain/tbelEnabled``: false — TBEL bodies run as JavaScript, there is no TBEL engine."""

    def get(self) -> None:
        self.rules()
        self.write_json(False)


class RuleChainRootHandler(RuleChainHandlerBase):
    """``POST /api/ruleChain/{id}/root``: make it the tenant's root chain; answers the chain."""

    async def post(self, chain_id: str) -> None:
        rules = self.rules()
        chain = await self.in_thread(rules.set_root, self.chain_id(chain_id))
        self.write_json(chain.chain_json())


class RuleChainMetadataHandler(RuleChainHandlerBase):
    """``GET /api/ruleChain/{id}/metadata``."""

    async def get(self, chain_id: str) -> None:
        rules = self.rules()
        chain = await self.in_thread(rules.get, self.chain_id(chain_id))
        self.write_json(chain.metadata_json())


class OutputLabelsHandler(RuleChainHandlerBase):
    """``GET /api/ruleChain/{id}/output/labels``: the names of its output nodes."""

    async def get(self, chain_id: str) -> None:
        rules = self.rules()
        self.write_json(await self.in_thread(rules.output_labels, self.chain_id(chain_id)))


class RuleChainHandler(RuleChainHandlerBase):
    """``GET`` / ``DELETE /api/ruleChain/{id}`` (the root chain cannot be deleted: 400)."""

    async def get(self, chain_id: str) -> None:
        rules = self.rules()
        chain = await self.in_thread(rules.get, self.chain_id(chain_id))
        self.write_json(chain.chain_json())

    async def delete(self, chain_id: str) -> None:
        rules = self.rules()
        await self.in_thread(rules.delete, self.chain_id(chain_id))
        self.set_status(200)
        self.finish()


def _ids_arg(handler: ApiHandler, name: str) -> list[str]:
    raw = handler.get_query_argument(name, None)
    if raw is None:
        raise ApiError(400, f"parameter '{name}' is required")
    ids = [entity_uuid(i.strip(), "rule chain id") for i in raw.split(",") if i.strip()]
    if len(ids) > 1000:
        raise ApiError(400, f"{name}: at most 1000 ids")
    return ids


class RuleChainsHandler(RuleChainHandlerBase):
    """``GET /api/ruleChains?pageSize&page[&type&textSearch&sortProperty&sortOrder]``: PageData
    of the tenant's chains (``textSearch``: in the name, any case); ``?ruleChainIds=a,b``: those."""

    async def get(self) -> None:
        rules = self.rules()
        if self.get_query_argument("ruleChainIds", None) is not None:
            await self.write_by_ids(rules, "ruleChainIds")
            return
        size = self.int_arg("pageSize", None, minimum=1, maximum=10_000)
        if size is None:
            raise ApiError(400, "parameter 'pageSize' is required")
        page = self.int_arg("page", 0, minimum=0, maximum=MAX_PAGE)
        ctype = self.get_query_argument("type", None) or "CORE"
        if ctype not in ("CORE", "EDGE"):
            raise ApiError(400, f"type must be CORE or EDGE, got {ctype!r}")
        text = (self.get_query_argument("textSearch", None) or "").lower()
        prop = self.get_query_argument("sortProperty", None) or "createdTime"
        if prop not in SORTS:
            raise ApiError(400, f"sortProperty must be one of {', '.join(SORTS)}, got {prop!r}")
        order = (self.get_query_argument("sortOrder", None) or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise ApiError(400, f"sortOrder must be ASC or DESC, got {order!r}")
        chains = [] if ctype == "EDGE" else await self.in_thread(rules.chains)
        chains = [c for c in chains if text in c.title.lower()]
        key = SORTS[prop]
        if key is not None:
            chains.sort(key=key)
        if order == "DESC":
            chains.reverse()
        items = chains[page * size : (page + 1) * size]
        self.write_json(page_data([c.chain_json() for c in items], len(chains), page, size))

    async def write_by_ids(self, rules: TenantRules, arg: str) -> None:
        wanted = set(_ids_arg(self, arg))
        chains = await self.in_thread(rules.chains)
        self.write_json([c.chain_json() for c in chains if c.id in wanted])


class RuleChainsListHandler(RuleChainsHandler):
    """``GET /api/ruleChains/list?ruleChainIds=a,b`` (ids of other tenants are left out)."""

    async def get(self) -> None:
        await self.write_by_ids(self.rules(), "ruleChainIds")


class DebugInHandler(RuleChainHandlerBase):
    """``GET /api/ruleNode/{id}/debugIn``: the node's latest IN debug event body (empty: none)."""

    async def get(self, node_id: str) -> None:
        rules = self.rules()
        event = await self.in_thread(rules.latest_debug_in, entity_uuid(node_id, "ruleNodeId"))
        if event is None:
            self.set_status(200)
            self.finish()
            return
        self.write_json(debug_in_json(event))


# -- tbpanel's extras ------------------------------------------------------------------------
class ChainDebugHandler(RuleChainHandlerBase):
    """``GET /api/tbpanel/ruleChain/{id}/debug[?nodeId&limit]``: the chain's recent debug
    events, oldest first (nodes in debug mode record them, the last 100 per node)."""

    async def get(self, chain_id: str) -> None:
        rules = self.rules()
        node = self.get_query_argument("nodeId", None) or None
        limit = self.int_arg("limit", 200, minimum=1, maximum=10_000)
        events = await self.in_thread(rules.debug_events, self.chain_id(chain_id), node, limit)
        self.write_json([e.to_json() for e in events])


class ChainCountersHandler(RuleChainHandlerBase):
    """``GET /api/tbpanel/ruleChain/{id}/counters``: ``{nodeId: {received, failures,
    relations, lastError, lastTs}}`` since the server started."""

    async def get(self, chain_id: str) -> None:
        rules = self.rules()
        counters = await self.in_thread(rules.counters, self.chain_id(chain_id))
        self.write_json({nid: counters_json(c) for nid, c in counters.items()})


class ChainRunHandler(RuleChainHandlerBase):
    """``POST /api/tbpanel/ruleChain/{id}/run`` ``{deviceId, msgType?, data, metadata?}``: run one
    message from one of the tenant's devices through the chain now, with real effects; answers
    how it ended (the paths' last nodes and relations)."""

    async def post(self, chain_id: str) -> None:
        rules = self.rules()
        cid = self.chain_id(chain_id)
        body = self.json_object("run")
        device_id = entity_uuid(body.get("deviceId"), "deviceId")
        msg_type = body.get("msgType") or "POST_TELEMETRY_REQUEST"
        metadata = body.get("metadata") or {}
        if not isinstance(msg_type, str) or not isinstance(metadata, dict):
            raise ApiError(400, "msgType must be a string and metadata an object")

        def run() -> RunResult:
            msg: TbMsg = rules.sample_message(device_id, body.get("data", {}), msg_type=msg_type, metadata=metadata)
            return rules.run_sample(cid, msg)

        self.write_json(run_json(await self.in_thread(run)))


class DeadLettersHandler(RuleChainHandlerBase):
    """``GET /api/tbpanel/rules/deadLetters[?limit]``: messages no chain could process, newest first."""

    async def get(self) -> None:
        rules = self.rules()
        limit = self.int_arg("limit", 100, minimum=1, maximum=10_000)
        letters = await self.in_thread(rules.dead_letters, limit)
        self.write_json([d.to_json() for d in letters])


class DeadLetterRetryHandler(RuleChainHandlerBase):
    """``POST /api/tbpanel/rules/deadLetters/{id}/retry``: back to the end of the queue (root chain)."""

    async def post(self, dead_id: str) -> None:
        rules = self.rules()
        if not dead_id.isdigit() or len(dead_id) > 18:
            raise ApiError(400, f"dead letter id must be an integer, got {dead_id[:40]!r}")
        await self.in_thread(rules.retry_dead, int(dead_id))
        self.set_status(200)
        self.finish()


def rule_chain_patterns(platform: Platform) -> list[Route]:
    """The rule chain routes; literal segments (``metadata``, ``testScript``) before ``{id}``."""
    p = {"platform": platform}
    if platform is not None:
        debug_log(platform.rules)  # record debug events from the start, not from the first read
    return [
        (r"/api/ruleChain/?", RuleChainSaveHandler, p),
        (r"/api/ruleChain/device/default/?", DefaultRuleChainHandler, p),
        (r"/api/ruleChain/metadata/?", RuleChainMetadataSaveHandler, p),
        (r"/api/ruleChain/testScript/?", TestScriptHandler, p),
        (r"/api/ruleChain/tbelEnabled/?", TbelEnabledHandler, p),
        (rf"/api/ruleChain/{ID}/root/?", RuleChainRootHandler, p),
        (rf"/api/ruleChain/{ID}/metadata/?", RuleChainMetadataHandler, p),
        (rf"/api/ruleChain/{ID}/output/labels/?", OutputLabelsHandler, p),
        (rf"/api/ruleChain/{ID}/?", RuleChainHandler, p),
        (r"/api/ruleChains/list/?", RuleChainsListHandler, p),
        (r"/api/ruleChains/?", RuleChainsHandler, p),
        (rf"/api/ruleNode/{ID}/debugIn/?", DebugInHandler, p),
        (rf"/api/tbpanel/ruleChain/{ID}/debug/?", ChainDebugHandler, p),
        (rf"/api/tbpanel/ruleChain/{ID}/counters/?", ChainCountersHandler, p),
        (rf"/api/tbpanel/ruleChain/{ID}/run/?", ChainRunHandler, p),
        (r"/api/tbpanel/rules/deadLetters/?", DeadLettersHandler, p),
        (rf"/api/tbpanel/rules/deadLetters/{ID}/retry/?", DeadLetterRetryHandler, p),
    ]
