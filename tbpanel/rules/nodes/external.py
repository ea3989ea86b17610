"""External nodes: what leaves tbpanel. A failure here (service down, an error answer) is
retried by the delivery queue from this node, never dropped (``external = True``)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
import param

from ..message import TbMsg
from .base import FAILURE, SUCCESS, Outputs, RuleNode, register, substitute


@register
class RestApiCallNode(RuleNode):
    """Sends the message data to ``restEndpointUrlPattern`` (``${metadata}`` / ``$[data]``
    patterns in the URL and header values); Success carries ``status``/``statusCode``/
    ``statusReason`` in the metadata and the answer as data, a non-2xx answer is a Failure."""

    tb_type = "rest.TbRestApiCallNode"
    category = "EXTERNAL"
    relations = (SUCCESS, FAILURE)
    external = True
    rest_endpoint_url_pattern = param.String(default="http://localhost/api")
    request_method: param.Selector[str] = param.Selector(
        default="POST", objects=["GET", "POST", "PUT", "DELETE", "PATCH"]
    )
    headers = param.Dict(default={"Content-Type": "application/json"})
    read_timeout_ms = param.Integer(default=0, bounds=(0, None), doc="0: 10 s.")
    ignore_request_body = param.Boolean(default=False)

    def check(self) -> None:
        url = self.rest_endpoint_url_pattern
        if not url.startswith(("http://", "https://")):
            raise ValueError("restEndpointUrlPattern must be an http:// or https:// URL")

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        url = substitute(self.rest_endpoint_url_pattern, msg)
        headers = {str(k): substitute(str(v), msg) for k, v in self.headers.items()}
        body = None
        if self.request_method in ("POST", "PUT", "PATCH") and not self.ignore_request_body:
            body = msg.data.encode() if isinstance(msg.data, str) else orjson.dumps(msg.data)
        req = urllib.request.Request(url, data=body, method=self.request_method, headers=headers)
        timeout = (self.read_timeout_ms or 10_000) / 1000
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's URL, by design)
                status, reason, answer = resp.status, resp.reason, resp.read()
        except urllib.error.HTTPError as exc:
            status, reason, answer = exc.code, exc.reason, exc.read()
        meta = {**msg.metadata, "status": str(reason), "statusCode": str(status), "statusReason": str(reason)}
        try:
            data: Any = orjson.loads(answer) if answer else {}
        except orjson.JSONDecodeError:
            data = answer.decode("utf-8", "replace")
        if not 200 <= status < 300:
            meta["error"] = f"HTTP {status} {reason}: {answer[:200].decode('utf-8', 'replace')}"
            return [(FAILURE, msg.copy(metadata=meta))]
        return [(SUCCESS, msg.copy(metadata=meta, data=data))]
