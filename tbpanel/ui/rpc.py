"""The RPC console on the device page: draws :class:`~tbpanel.views.rpc.RpcConsole` and runs
its blocking step and its wait through :class:`~tbpanel.ui.background.Background`."""

from __future__ import annotations

import html

import panel as pn
import param

from ..views.rpc import RpcConsole
from .background import Background


class RpcPanel(pn.viewable.Viewer):
    """Method, params, one-way/two-way, timeout, a Send button and the answer."""

    console = param.ClassSelector(class_=RpcConsole)

    def __init__(self, executor, **params):
        super().__init__(**params)
        c = self.console
        self._background = Background(executor)
        self._method = pn.widgets.TextInput.from_param(
            c.param.method, name="Method", placeholder="e.g. setGpio", css_classes=["rpc-method"], width=220
        )
        self._params = pn.widgets.TextAreaInput.from_param(
            c.param.params_text, name="Params (JSON)", css_classes=["rpc-params"], height=80, width=220
        )
        self._kind = pn.widgets.RadioButtonGroup(
            options=["Two-way", "One-way"], value="Two-way", css_classes=["rpc-kind"], width=220
        )
        self._kind.param.watch(lambda e: setattr(c, "two_way", e.new == "Two-way"), "value")
        self._timeout = pn.widgets.IntInput.from_param(
            c.param.timeout_ms, name="Timeout (ms)", css_classes=["rpc-timeout"], width=220
        )
        self._send = pn.widgets.Button(name="Send RPC", button_type="primary", css_classes=["rpc-send"], width=220)
        self._send.on_click(lambda _: self.send())
        self._answer = pn.pane.HTML(self._render(), css_classes=["rpc-answer"], sizing_mode="stretch_width")
        c.param.watch(lambda _: setattr(self._answer, "object", self._render()), ["status", "answer"])

    def send(self) -> None:
        c = self.console
        c.status, c.answer = "sending", ""
        self._send.disabled = True

        def sent(call) -> None:  # on the document: watch the call, show its end there
            def ended() -> None:  # the RPC service's thread: hop onto the document's loop
                if self._background.doc is None:  # no served document (a notebook)
                    self._shown(c.outcome(call))
                else:
                    self._background.on_document(lambda: self._shown(c.outcome(call)))

            c.when_done(call, ended)

        def refused(exc: Exception) -> None:
            c.failed(exc)
            self._send.disabled = False

        self._background.run("rpc-send", c.submit, sent, refused)

    def _shown(self, outcome: tuple[str, str]) -> None:
        self.console.show(outcome)
        self._send.disabled = False

    def _render(self) -> str:
        c = self.console
        if not c.status:
            return '<div class="rpc-status">No request sent yet.</div>'
        text = html.escape(c.answer)
        return (
            f'<div class="rpc-status" data-status="{html.escape(c.status)}"><b>{html.escape(c.status)}</b></div>'
            f'<pre class="rpc-result" style="white-space: pre-wrap">{text}</pre>'
        )

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown("### Send an RPC"),
            self._method,
            self._params,
            self._kind,
            self._timeout,
            self._send,
            self._answer,
            width=380,
            css_classes=["rpc-panel"],
        )
