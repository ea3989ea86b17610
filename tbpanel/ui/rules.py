"""The ``/rules`` page (tenant administrators): the tenant's rule chains, one chain drawn as a
graph and edited node by node, its debug events streaming live, and the dead letters.

It draws :mod:`tbpanel.views.rules` (:class:`~tbpanel.views.rules.ChainList`,
:class:`~tbpanel.views.rules.ChainEditor`). Reads and writes run off the server loop through
:class:`~tbpanel.ui.background.Background`; debug events arrive on the engine's thread
(:class:`~tbpanel.rules.debug_log.DebugLog.changed`) and reach the page by
``Background.follow``, which schedules at most one refresh per session on its document, so a
burst of messages costs a browser one redraw.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, DataRange1d, TapTool
from bokeh.plotting import figure

from ..errors import EntityError
from ..rules.debug_log import debug_log
from ..rules.tenant_rules import TenantRules
from ..views.rules import (
    CHAIN_COLUMNS,
    DEAD_COLUMNS,
    DEBUG_COLUMNS,
    ChainEditor,
    ChainList,
    debug_frame,
    export_name,
    graph_data,
    node_types,
    run_text,
)
from .background import Background
from .layout import page_template

TENANT_ADMIN = "TENANT_ADMIN"


def table(columns: list[str], css: str, **options: Any) -> pn.widgets.Tabulator:
    """A read-only table of ``columns`` (rows arrive later), found by its CSS class."""
    return pn.widgets.Tabulator(
        pd.DataFrame(columns=columns), show_index=False, disabled=True, css_classes=[css], **options
    )


class RulesView(pn.viewable.Viewer):
    """Chains on the left; the open chain's graph, node form, script test, sample run and
    debug events on the right; dead letters below."""

    def __init__(self, platform: Any, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.platform, self.user = platform, user
        self.rules = TenantRules(platform.rules, user.tenant_id)
        self.chains = ChainList(self.rules)
        self.editor: ChainEditor | None = None
        self._bg = Background(platform.executor)
        self._dead_selected: int | None = None
        # -- the chain list
        self._table = table(
            CHAIN_COLUMNS, "rules-chains", height=260, width=340, hidden_columns=["id"], selectable=False
        )
        self._table.on_click(self._on_chain_click)
        self._new_name = pn.widgets.TextInput(
            name="New chain", placeholder="name", css_classes=["rules-new-name"], width=200
        )
        self._create = pn.widgets.Button(name="Create", button_type="primary", css_classes=["rules-create"], width=120)
        self._create.on_click(
            lambda _e: self._act("create", lambda: self.chains.create(self._new_name.value or ""), self._opened)
        )
        self._import = pn.widgets.FileInput(accept=".json", css_classes=["rules-import"], width=330)
        self._import.param.watch(self._on_import, "value")
        self._message = pn.pane.Markdown("", css_classes=["rules-message"], sizing_mode="stretch_width")
        # -- the open chain
        self._title = pn.pane.Markdown("### Select or create a chain", css_classes=["rules-title"])
        self._root = pn.widgets.Button(name="Make root", css_classes=["rules-make-root"], width=110, disabled=True)
        self._root.on_click(lambda _e: self._chain_act("root", lambda cid: self.chains.make_root(cid)))
        self._delete = pn.widgets.Button(
            name="Delete chain", button_type="danger", css_classes=["rules-delete"], width=120, disabled=True
        )
        self._delete.on_click(lambda _e: self._chain_act("delete", lambda cid: self.chains.delete(cid), close=True))
        self._export = pn.widgets.FileDownload(
            callback=self._export_file,
            filename="rule_chain.json",
            label="Export",
            css_classes=["rules-export"],
            width=110,
            disabled=True,
        )
        self._save = pn.widgets.Button(
            name="Save chain", button_type="primary", css_classes=["rules-save"], width=120, disabled=True
        )
        self._save.on_click(lambda _e: self._save_chain())
        # graph
        self._nodes_src = ColumnDataSource(
            {k: [] for k in ("x", "y", "name", "type", "colour", "line", "label", "index")}
        )
        self._edges_src = ColumnDataSource({k: [] for k in ("xs", "ys", "label", "mx", "my")})
        self._figure = self._make_figure()
        self._graph = pn.pane.Bokeh(self._figure, css_classes=["rules-graph"], sizing_mode="stretch_width")
        # graph editing
        self._node_type = pn.widgets.Select(
            name="Node type", options=node_types(), css_classes=["rules-node-type"], width=260
        )
        self._node_name = pn.widgets.TextInput(
            name="Name", placeholder="node name", css_classes=["rules-node-name"], width=160
        )
        self._add_node = pn.widgets.Button(name="Add node", css_classes=["rules-add-node"], width=100)
        self._add_node.on_click(
            lambda _e: self._edit(lambda ed: ed.add_node(self._node_type.value, self._node_name.value))
        )
        self._from = pn.widgets.Select(name="From", options={}, css_classes=["rules-from"], width=160)
        self._to = pn.widgets.Select(name="To", options={}, css_classes=["rules-to"], width=160)
        self._label = pn.widgets.TextInput(name="Relation", value="Success", css_classes=["rules-label"], width=120)
        self._connect = pn.widgets.Button(name="Connect", css_classes=["rules-connect"], width=100)
        self._connect.on_click(
            lambda _e: self._edit(lambda ed: ed.connect(self._from.value, self._to.value, self._label.value))
        )
        self._connections = pn.widgets.Select(
            name="Connections", options={}, css_classes=["rules-connections"], width=300
        )
        self._disconnect = pn.widgets.Button(name="Remove connection", css_classes=["rules-disconnect"], width=150)
        self._disconnect.on_click(lambda _e: self._disconnect_selected())
        # the selected node
        self._node_pick = pn.widgets.Select(name="Node", options={}, css_classes=["rules-node-select"], width=260)
        self._node_pick.param.watch(self._on_node_pick, "value")
        self._node_panel = pn.Column(css_classes=["rules-node"], sizing_mode="stretch_width")
        self._draft: Any = None
        # sample run
        self._run_device = pn.widgets.Select(name="Device", options={}, css_classes=["rules-run-device"], width=220)
        self._run_type = pn.widgets.TextInput(
            name="Message type", value="POST_TELEMETRY_REQUEST", css_classes=["rules-run-type"], width=220
        )
        self._run_data = pn.widgets.TextAreaInput(
            name="Data (JSON)", value='{"temperature": 25}', css_classes=["rules-run-data"], height=70, width=300
        )
        self._run = pn.widgets.Button(name="Send through this chain", css_classes=["rules-run"], width=200)
        self._run.on_click(lambda _e: self._run_sample())
        self._run_result = pn.pane.Markdown("", css_classes=["rules-run-result"])
        # debug events and dead letters
        self._debug = table(DEBUG_COLUMNS, "rules-debug", height=280, sizing_mode="stretch_width", pagination=None)
        self._dead = table(DEAD_COLUMNS, "rules-dead", height=180, sizing_mode="stretch_width", selectable=False)
        self._dead.on_click(self._on_dead_click)
        self._retry = pn.widgets.Button(name="Retry selected", css_classes=["rules-retry"], width=140, disabled=True)
        self._retry.on_click(lambda _e: self._retry_dead())
        self.refresh_chains()
        self._load_devices()

    # -- drawing ---------------------------------------------------------------------------
    def _make_figure(self) -> Any:
        # nodes keep their size on screen whatever the zoom; the ranges leave room for them
        fig = figure(
            height=360,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,reset",
            toolbar_location="right",
            x_range=DataRange1d(range_padding=140, range_padding_units="absolute"),
            y_range=DataRange1d(range_padding=60, range_padding_units="absolute"),
        )
        fig.axis.visible = False
        fig.grid.visible = False
        fig.multi_line("xs", "ys", source=self._edges_src, line_color="#8a94a6", line_width=2)
        fig.text(
            "mx",
            "my",
            text="label",
            source=self._edges_src,
            text_font_size="10pt",
            text_color="#5a6473",
            text_align="center",
        )
        nodes = fig.rect(
            "x",
            "y",
            width=170,
            height=46,
            width_units="screen",
            height_units="screen",
            source=self._nodes_src,
            fill_color="colour",
            line_color="line",
            line_width=3,
        )
        fig.text(
            "x",
            "y",
            text="label",
            source=self._nodes_src,
            text_align="center",
            text_baseline="middle",
            text_font_size="9pt",
            text_color="white",
        )
        fig.add_tools(TapTool(renderers=[nodes]))
        self._nodes_src.selected.on_change("indices", self._on_tap)
        return fig

    def _draw(self, counters: dict[str, Any]) -> None:
        ed = self.editor
        if ed is None:
            self._nodes_src.data = {k: [] for k in self._nodes_src.data}
            self._edges_src.data = {k: [] for k in self._edges_src.data}
            return
        data = graph_data(ed.chain, counters, ed.selected)
        self._nodes_src.data = data.nodes
        self._edges_src.data = data.edges
        self._sync_pickers(ed)
        self._title.object = f"### {ed.title}" + (" · *unsaved changes*" if ed.dirty else "")

    def _sync_pickers(self, ed: ChainEditor) -> None:
        """The node and connection pickers follow the chain being edited."""
        nodes = ed.node_labels()
        for w in (self._from, self._to, self._node_pick):
            if w.options != nodes:
                w.options = nodes
        conns = ed.connection_labels()
        if self._connections.options != conns:
            self._connections.options = conns

    # -- chains ----------------------------------------------------------------------------
    def refresh_chains(self) -> None:
        self._bg.run("chains", lambda: (self.chains.frame(), self.chains.dead_letters()), self._show_chains)

    def _show_chains(self, frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        self._table.value, self._dead.value = frames

    def _load_devices(self) -> None:
        def load() -> dict[str, str]:
            items, _ = self.platform.registry.list_devices(
                self.user.tenant_id, page_size=1000, sort_property="name", sort_order="ASC"
            )
            return {d.name: d.id for d in items}

        def show(devices: dict[str, str]) -> None:
            self._run_device.options = devices

        self._bg.run("devices", load, show)

    def _say(self, text: str) -> None:
        self._message.object = text

    def _refused(self, exc: Exception) -> None:
        if not isinstance(exc, EntityError):
            raise exc
        self._say(f"⚠ {exc}")

    def _act(self, key: str, work: Any, then: Any = None) -> None:
        def done(result: Any) -> None:
            self._say("")
            self.refresh_chains()
            if then is not None:
                then(result)

        self._bg.run(key, work, done, self._refused)

    def _chain_act(self, key: str, work: Any, close: bool = False) -> None:
        if self.editor is None:
            return
        cid = self.editor.chain.id
        self._act(key, lambda: work(cid), (lambda _r: self._close()) if close else (lambda _r: self.open(cid)))

    def _on_chain_click(self, event: Any) -> None:
        self.open(self._table.value.iloc[event.row]["id"])

    def _opened(self, chain: Any) -> None:
        self.open(chain.id)

    def open(self, chain_id: str) -> None:
        """Edit ``chain_id`` (a fresh copy of the stored chain)."""

        def show(editor: ChainEditor) -> None:
            if self.editor is not None and self.editor.chain.id == chain_id and self.editor.selected is not None:
                editor.selected = min(self.editor.selected, len(editor.chain.nodes) - 1) if editor.chain.nodes else None
            self.editor = editor
            self.chains.selected = chain_id
            for w in (self._root, self._delete, self._export, self._save):
                w.disabled = False
            self._export.filename = export_name(editor.title)
            self._show_node()
            self.refresh_live()

        self._bg.run("open", lambda: ChainEditor(self.rules, self.rules.get(chain_id)), show, self._refused)

    def _close(self) -> None:
        self.editor = None
        for w in (self._root, self._delete, self._export, self._save):
            w.disabled = True
        self._title.object = "### Select or create a chain"
        self._node_panel.objects = []
        self._draw({})
        self._debug.value = pd.DataFrame(columns=DEBUG_COLUMNS)

    def _on_import(self, event: Any) -> None:
        if event.new:
            data = event.new
            self._act("import", lambda: self.chains.import_file(data), self._opened)

    def _export_file(self) -> io.StringIO:
        if self.editor is None:
            return io.StringIO("")
        return io.StringIO(self.editor.chain.export_text())

    # -- editing ---------------------------------------------------------------------------
    def _edit(self, change: Any) -> None:
        """Apply an in-memory edit (nothing is stored until Save); refusals are shown."""
        if self.editor is None:
            self._say("⚠ open a chain first")
            return
        try:
            change(self.editor)
        except EntityError as exc:
            self._say(f"⚠ {exc}")
            return
        self._say("")
        self._show_node()
        self.refresh_live()

    def _disconnect_selected(self) -> None:
        position = self._connections.value
        if position is not None:
            self._edit(lambda ed: ed.disconnect(position))

    def _save_chain(self) -> None:
        ed = self.editor
        if ed is None:
            return

        def saved(_chain: Any) -> None:
            self._say(f"✔ saved *{ed.title}*")
            self.refresh_chains()
            self._show_node()
            self.refresh_live()

        self._bg.run("save", ed.save, saved, self._refused)

    def _on_tap(self, _attr: str, _old: Any, new: list[int]) -> None:
        if new and self.editor is not None:
            self.editor.selected = int(self._nodes_src.data["index"][new[0]])
            self._show_node()
            self.refresh_live()

    def _on_node_pick(self, event: Any) -> None:
        if self.editor is not None and event.new is not None and event.new != self.editor.selected:
            self.editor.selected = event.new
            self._show_node()
            self.refresh_live()

    def _show_node(self) -> None:
        """The selected node's form: generated from its param parameters, plus the script editor."""
        ed = self.editor
        if ed is None or ed.selected is None or ed.selected >= len(ed.chain.nodes):
            self._node_panel.objects = [pn.pane.Markdown("*Select a node on the graph or in the list.*")]
            return
        index = ed.selected
        node = ed.node(index)
        self._sync_pickers(ed)
        self._node_pick.value = index
        self._draft = type(node.impl).from_config(node.impl.to_config(), node_name=node.name)
        name = pn.widgets.TextInput(name="Name", value=node.name, css_classes=["rules-edit-name"], width=240)
        debug = pn.widgets.Checkbox(name="Debug mode", value=node.debug_mode, css_classes=["rules-edit-debug"])
        form = pn.Param(self._draft, parameters=ed.form_params(index), show_name=False, sizing_mode="stretch_width")
        script_param = ed.script_param(index)
        script = None
        if script_param is not None:
            script = pn.widgets.TextAreaInput(
                name="Script (function body of msg, metadata, msgType)",
                value=getattr(self._draft, script_param),
                css_classes=["rules-script"],
                height=140,
                sizing_mode="stretch_width",
            )
        apply = pn.widgets.Button(name="Apply", button_type="primary", css_classes=["rules-apply"], width=90)
        first = pn.widgets.Button(name="Make first node", css_classes=["rules-first"], width=130)
        remove = pn.widgets.Button(
            name="Delete node", button_type="danger", css_classes=["rules-remove-node"], width=110
        )

        def do_apply(_e: Any) -> None:
            values = {p: getattr(self._draft, p) for p in ed.form_params(index)}
            if script is not None and script_param is not None:
                values[script_param] = script.value
            self._edit(lambda e: e.apply_node(index, name=name.value, debug_mode=debug.value, values=values))

        apply.on_click(do_apply)
        first.on_click(lambda _e: self._edit(lambda e: e.set_first(index)))
        remove.on_click(lambda _e: self._edit(lambda e: e.remove_node(index)))
        parts: list[Any] = [
            pn.pane.Markdown(f"**{node.name}** · `{node.type.rsplit('.', 1)[-1]}`"),
            pn.Row(name, debug),
            form,
        ]
        if script is not None:
            parts += [script, self._script_test(script)]
        parts.append(pn.Row(apply, first, remove))
        self._node_panel.objects = parts

    def _script_test(self, script: Any) -> Any:
        msg = pn.widgets.TextAreaInput(
            name="Sample message", value='{"temperature": 25}', css_classes=["rules-sample-msg"], height=60, width=220
        )
        meta = pn.widgets.TextAreaInput(
            name="Sample metadata",
            value='{"deviceName": "Device A", "deviceType": "default"}',
            css_classes=["rules-sample-meta"],
            height=60,
            width=260,
        )
        mtype = pn.widgets.TextInput(name="Message type", value="POST_TELEMETRY_REQUEST", width=200)
        out = pn.pane.Markdown("", css_classes=["rules-test-output"])
        button = pn.widgets.Button(name="Test on a sample message", css_classes=["rules-test"], width=200)
        ed = self.editor
        assert ed is not None

        def shown(trial: Any) -> None:
            out.object = f"✖ **error:** `{trial.error}`" if trial.error else f"✔ **output:** `{trial.output}`"

        button.on_click(
            lambda _e: self._bg.run(
                "test",
                lambda: ed.test_script(script.value or "", msg.value or "", meta.value or "", mtype.value or ""),
                shown,
                self._refused,
            )
        )
        return pn.Column(pn.Row(msg, meta, mtype), pn.Row(button, out))

    # -- running, live -----------------------------------------------------------------------
    def _run_sample(self) -> None:
        ed = self.editor
        if ed is None or not self._run_device.value:
            self._say("⚠ open a chain and pick a device")
            return
        device, data, mtype = self._run_device.value, self._run_data.value or "", self._run_type.value or ""

        def shown(result: Any) -> None:
            self._run_result.object = run_text(result)
            self.refresh_live()

        self._bg.run("run", lambda: ed.run_sample(device, data, mtype), shown, self._refused)

    def refresh_live(self) -> None:
        """Counters (the graph's colours) and the debug events of the open chain."""
        ed = self.editor
        if ed is None:
            return

        def load() -> tuple[dict[str, Any], pd.DataFrame]:
            return ed.counters(), debug_frame(self.rules.debug_events(ed.chain.id, limit=200))

        def show(got: tuple[dict[str, Any], pd.DataFrame]) -> None:
            if self.editor is ed:
                self._draw(got[0])
                self._debug.value = got[1]

        self._bg.run("live", load, show, self._refused)

    def _on_dead_click(self, event: Any) -> None:
        self._dead_selected = int(self._dead.value.iloc[event.row]["id"])
        self._retry.disabled = False

    def _retry_dead(self) -> None:
        if self._dead_selected is not None:
            dead = self._dead_selected
            self._dead_selected = None
            self._retry.disabled = True
            self._act("retry", lambda: self.chains.retry(dead))

    def __panel__(self) -> Any:
        log = debug_log(self.platform.rules)
        tenant = self.user.tenant_id
        self._bg.follow(
            log.changed,
            lambda t, chain_id: t == tenant and self.editor is not None and chain_id == self.editor.chain.id,
            self.refresh_live,
            10_000,
            self.refresh_chains,
        )
        left = pn.Column(
            pn.pane.Markdown("### Rule chains"),
            self._table,
            pn.Row(self._new_name, self._create),
            pn.pane.Markdown("Import a ThingsBoard rule chain file (.json):"),
            self._import,
            width=360,
        )
        right = pn.Column(
            pn.Row(self._title, self._save, self._root, self._export, self._delete),
            self._message,
            self._graph,
            pn.Row(self._node_type, self._node_name, self._add_node),
            pn.Row(self._from, self._label, self._to, self._connect),
            pn.Row(self._connections, self._disconnect),
            self._node_pick,
            self._node_panel,
            pn.pane.Markdown("#### Send a message through this chain (real effects: the saved chain runs)"),
            pn.Row(self._run_device, self._run_type, self._run_data, self._run),
            self._run_result,
            pn.pane.Markdown("#### Debug events (nodes in debug mode; live)"),
            self._debug,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.Row(left, right, sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Dead letters (messages no chain could process)"),
            self._dead,
            self._retry,
            sizing_mode="stretch_width",
        )


def rules_page(platform: Any) -> pn.template.BaseTemplate:
    """The rule chain editor for tenant administrators; customer users are refused."""
    template, user = page_template(platform, "/rules")
    if user is None:
        return template
    if user.authority != TENANT_ADMIN:
        template.main.append(
            pn.pane.Alert(
                "Rule chains are for **tenant administrators only**: they process every device's messages.",
                alert_type="warning",
                name="rules-refused",
            )
        )
        return template
    template.main.append(RulesView(platform, user))
    return template
