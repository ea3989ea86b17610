"""The dashboard pages as data: the list of a user's dashboards, and the editor of one.

:class:`DashboardEditor` holds what the ``/dashboard`` page edits (view or edit mode, the
state shown, the undo history) and does every change through the
:class:`~tbpanel.dashboards.model.Dashboard` model, so the browser and a notebook edit the
same objects. Saving goes through ``Platform.dashboards`` (the store checks who may), and
what the store answers (id, version) is adopted, so the next save is an update. No Panel.
"""

from __future__ import annotations

from typing import Any

import param

from ..dashboards.model import WIDGET_KINDS, Dashboard, WidgetModel
from ..entities import CUSTOMER_USER, TENANT_ADMIN
from .fleet import Fleet

#: most undo steps kept
UNDO_DEPTH = 50


def may_edit(user: Any) -> bool:
    """Tenant administrators change dashboards; customer users only view the assigned ones."""
    return getattr(user, "authority", None) == TENANT_ADMIN


class DashboardList(param.Parameterized):
    """The dashboards a user may open: the tenant's (administrator) or the customer's assigned ones."""

    text = param.String(default="", doc="Title search.")

    def __init__(self, platform: Any, user: Any, **params: Any):
        super().__init__(**params)
        self.platform, self.user = platform, user

    def rows(self) -> list[dict[str, Any]]:
        """``[{id, title, customers}]`` (blocking: a registry read)."""
        store = self.platform.dashboards
        search = self.text.strip() or None
        if self.user.authority == CUSTOMER_USER:
            infos, _ = store.list_customer(self.user, self.user.customer_id, 0, 1000, search)
        elif self.user.authority == TENANT_ADMIN:
            infos, _ = store.list_tenant(self.user, 0, 1000, search)
        else:
            infos = []
        return [
            {
                "id": i["id"]["id"],
                "title": i["title"],
                "customers": ", ".join(c.get("title", "") for c in i.get("assignedCustomers") or []),
            }
            for i in infos
        ]

    def create(self, title: str) -> str:
        """A new empty dashboard; its id."""
        return str(self.platform.dashboards.save(self.user, Dashboard(title=title).to_json())["id"]["id"])


class DashboardEditor(param.Parameterized):
    """One user's editing of one dashboard: mode, current state, undo, save."""

    mode: param.Selector[str] = param.Selector(default="view", objects=["view", "edit"])
    state_id = param.String(default="", doc="The state (page) shown; '' = the root state.")
    dirty = param.Boolean(default=False, doc="Changed since the last save or load.")
    revision = param.Integer(default=0, doc="Bumped on every change the grid must redraw for.")

    def __init__(self, platform: Any, user: Any, dashboard: Dashboard, **params: Any):
        super().__init__(**params)
        self.platform, self.user, self.dashboard = platform, user, dashboard
        self._undo: list[dict[str, Any]] = []
        if not self.state_id or self.state_id not in dashboard.states:
            self.state_id = dashboard.root_state.id

    @classmethod
    def open(cls, platform: Any, user: Any, dashboard_id: str) -> DashboardEditor:
        """The stored dashboard (the store raises NotFound / PermissionDenied for one the user
        may not read, e.g. not assigned to the customer user's customer)."""
        return cls(platform, user, Dashboard.from_json(platform.dashboards.get(user, dashboard_id)))

    @property
    def editable(self) -> bool:
        return may_edit(self.user)

    # -- undo ----------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        if not self.editable:
            raise PermissionError("only a tenant administrator edits dashboards")
        self._undo.append(self.dashboard.to_json())
        del self._undo[:-UNDO_DEPTH]

    def _changed(self) -> None:
        self.dirty = True
        self.revision += 1

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> bool:
        """Back to before the last change; False when there is none."""
        if not self._undo:
            return False
        body = self._undo.pop()
        restored = Dashboard.from_json(body)
        d = self.dashboard
        d.param.update(
            title=restored.title,
            description=restored.description,
            widgets=restored.widgets,
            states=restored.states,
            aliases=restored.aliases,
            timewindow=restored.timewindow,
            settings=restored.settings,
        )
        if self.state_id not in d.states:
            self.state_id = d.root_state.id
        self._changed()
        return True

    # -- changes -------------------------------------------------------------------------------
    def add_widget(self, kind: str, **settings: Any) -> WidgetModel:
        """A new widget of ``kind`` in the current state, at the first free spot."""
        self._checkpoint()
        cls = WIDGET_KINDS[kind]
        settings.setdefault("title", kind.replace("_", " ").capitalize())
        if "alias_id" not in settings and self.dashboard.aliases:
            settings["alias_id"] = next(iter(self.dashboard.aliases))
        widget = self.dashboard.add_widget(cls(**settings), self.state_id)
        self._changed()
        return widget

    def remove_widget(self, widget_id: str) -> None:
        self._checkpoint()
        self.dashboard.remove_widget(widget_id)
        self._changed()

    def update_widget(self, widget_id: str, **values: Any) -> None:
        """Change a widget's parameters (the settings drawer's apply)."""
        self._checkpoint()
        self.dashboard.widgets[widget_id].param.update(**values)
        self._changed()

    def apply_grid(self, places: dict[str, tuple[int, int, int, int]]) -> bool:
        """The grid after a drag or resize: ``{widget id: (row, col, size_x, size_y)}``; only a
        real change is an undo step. True when something moved."""
        state = self.dashboard.state(self.state_id)
        moved = {
            wid: p
            for wid, p in places.items()
            if wid in state.layout and state.layout[wid].to_json() != dict(zip(("row", "col", "sizeX", "sizeY"), p))
        }
        if not moved:
            return False
        self._checkpoint()
        for wid, (row, col, sx, sy) in moved.items():
            self.dashboard.move_widget(wid, row, col, sx, sy, self.state_id)
        self.dirty = True  # the grid already shows it: no redraw
        return True

    def add_state(self, title: str) -> str:
        self._checkpoint()
        state = self.dashboard.add_state(title)
        self.state_id = state.id
        self._changed()
        return state.id

    def set_timewindow(self, **values: Any) -> None:
        self._checkpoint()
        assert self.dashboard.timewindow is not None
        self.dashboard.timewindow.param.update(**values)
        self._changed()

    # -- aliases -------------------------------------------------------------------------------
    def alias_choices(self, limit: int = 50) -> dict[str, dict[str, Any]]:
        """New aliases the settings drawer offers: all devices, each device type, and each of
        the first ``limit`` devices the user may see (blocking: a registry read)."""
        found, _ = Fleet(self.platform, self.user).find_devices("", limit)
        choices: dict[str, dict[str, Any]] = {"All devices": {"type": "entityType", "entityType": "DEVICE"}}
        for t in sorted({d.type for d in found}):
            choices[f"Type: {t}"] = {"type": "deviceType", "deviceTypes": [t], "deviceNameFilter": ""}
        for d in found:
            choices[f"Device: {d.name}"] = {
                "type": "singleEntity",
                "singleEntity": {"entityType": "DEVICE", "id": d.id},
                "resolveMultiple": False,
            }
        return choices

    # -- storage -------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """Store the dashboard (create or update) and adopt the answer (blocking)."""
        stored = self.platform.dashboards.save(self.user, self.dashboard.to_json())
        self.dashboard.adopt(stored)
        self.dirty = False
        return stored
