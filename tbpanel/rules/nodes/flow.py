"""Flow nodes: into another chain of the tenant, and back out with a named relation."""

from __future__ import annotations

import param

from ..message import TbMsg
from .base import FAILURE, NodeConfigError, Outputs, RuleNode, register


@register
class RuleChainInputNode(RuleNode):
    """Runs the message through chain ``ruleChainId``; what reaches an output node there comes
    back out of this node with that output node's name as the relation."""

    tb_type = "flow.TbRuleChainInputNode"
    category = "FLOW"
    relations = (FAILURE,)
    rule_chain_id = param.String(default="")
    forward_msg_to_default_rule_chain = param.Boolean(default=False)

    def check(self) -> None:
        if not self.rule_chain_id and not self.forward_msg_to_default_rule_chain:
            raise NodeConfigError("rule chain node: ruleChainId is required")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if ctx.call_chain is None:
            raise RuntimeError("this node runs only inside a rule engine")
        return ctx.call_chain(self.rule_chain_id, msg)


@register
class RuleChainOutputNode(RuleNode):
    """Returns the message to the chain that called this one, under this node's name."""

    tb_type = "flow.TbRuleChainOutputNode"
    category = "FLOW"
    relations = ()

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(ctx.node_name, msg)]
