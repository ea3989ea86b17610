"""The ``/models`` list as data: one row per model of a tenant, and what its buttons do.

Rows carry what the list shows (status, the running task's progress, anomaly counts, last
run, the three refresh toggles); the actions go through the anomaly service so the page, the
REST API and notebooks obey the same rules (refresh needs a built model, a rebuild switches it
off, deletion clears or deletes the model's alarms by its ``alarm_on_delete`` setting).
"""

from __future__ import annotations

import param

from ...alarms import AlarmQuery
from ...clock import utc_text

#: the three switches of a row, as RefreshSettings knobs
TOGGLES = {"monitoring": "enabled", "saving": "save_telemetry", "alarms": "create_alarms"}


def fmt_ms(ms: int | None) -> str:
    """UTC time for tables ("never" when missing)."""
    return f"{utc_text(ms)} UTC" if ms else "never"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class ModelRow(param.Parameterized):
    """One model as the list shows it."""

    id = param.String()
    title = param.String()
    device_type = param.String()
    status = param.String()
    message = param.String(default="")
    progress = param.Number(default=None, allow_None=True, doc="Running task's progress 0..1, else None.")
    task_kind = param.String(default="")
    built = param.Boolean(default=False)
    anomalies = param.Integer(default=0)
    active = param.Integer(default=0)
    items = param.Integer(default=0)
    last_run = param.String(default="never", doc="Last refresh run, else the build time.")
    monitoring = param.Boolean(default=False)
    saving = param.Boolean(default=False)
    alarms = param.Boolean(default=False)

    def signature(self) -> tuple:
        """What changes the row's look (the view updates only rows whose signature moved)."""
        return tuple(getattr(self, p) for p in self.param if p != "name")


class ModelsList(param.Parameterized):
    """A tenant's models and the actions of the models page."""

    tenant_id = param.String()
    rows = param.List(default=[], item_type=ModelRow)

    def __init__(self, platform, **params):
        super().__init__(**params)
        self._platform = platform
        self._service = platform.anomaly

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> list[ModelRow]:
        """Fresh rows (blocking reads: call it off the server loop)."""
        out = []
        for m in self._service.list_models(self.tenant_id):
            counts = self._service.repo.count_anomalies(m.id)
            running = next(
                (t for t in self._platform.tasks.list(model_id=m.id, limit=3) if t.status in ("QUEUED", "IN_PROGRESS")),
                None,
            )
            out.append(
                ModelRow(
                    id=m.id,
                    title=m.config.name,
                    device_type=m.config.device_type,
                    status=m.status,
                    message=m.message,
                    progress=None if running is None else float(running.progress),
                    task_kind=running.kind if running else "",
                    built=m.built_ms is not None,
                    anomalies=counts["anomalies"],
                    active=int(counts["active"]),
                    items=counts["items"],
                    last_run=fmt_ms(m.last_refresh_run_ms or m.built_ms),
                    monitoring=m.refresh.enabled,
                    saving=m.refresh.save_telemetry,
                    alarms=m.refresh.create_alarms,
                )
            )
        return out

    def refresh(self) -> ModelsList:
        self.rows = self.load()
        return self

    def _model(self, model_id: str):
        model = self._service.get_model(model_id)
        if model is None or model.tenant_id != self.tenant_id:
            raise PermissionError("no such model in this tenant")
        return model

    # -- actions -------------------------------------------------------------------------------
    def toggle(self, model_id: str, toggle: str, value: bool) -> None:
        """Switch monitoring (refresh), saving scores or alarm creation; ValueError says why not."""
        self._model(model_id)
        self._service.set_refresh(model_id, {TOGGLES[toggle]: bool(value)})

    def duplicate(self, model_id: str):
        """A copy of the model's settings under a new name, built at once (returns the build task).

        Refresh stays off on the copy (a fresh build switches it off anyway); the copy's own
        anomalies come from its own build, never copied, so each anomaly has one alarm at most."""
        model = self._model(model_id)
        names = {m.config.name for m in self._service.list_models(self.tenant_id)}
        base = f"{model.config.name} (copy)"
        name, n = base, 2
        while name in names:
            name, n = f"{base} {n}", n + 1
        refresh = model.refresh.to_dict() | {"enabled": False}
        copy = self._service.create_model(self.tenant_id, model.config.copy(name=name), refresh=refresh)
        return copy, self._service.build(copy.id)

    def build(self, model_id: str):
        self._model(model_id)
        return self._service.build(model_id)

    def delete_warning(self, model_id: str) -> str:
        """What deleting the model does, spelled out (markdown) for the confirmation."""
        model = self._model(model_id)
        c = model.config
        counts = self._service.repo.count_anomalies(model_id)
        repo = self._platform.alarms.repo
        _, total = repo.query(AlarmQuery(self.tenant_id, model_id=model_id, page_size=1))
        _, active = repo.query(AlarmQuery(self.tenant_id, model_id=model_id, search_status="ACTIVE", page_size=1))
        setting = f"(setting *alarm behaviour on anomaly deletion* = {c.alarm_on_delete})"
        if c.alarm_on_delete == "delete":
            fate = f"Its alarms are **deleted** {setting}: {_n(total, 'alarm')} disappear from the alarm list."
        else:
            fate = (
                f"Its alarms are **cleared** {setting}: {active} of its {_n(total, 'alarm')} "
                f"{'is' if active == 1 else 'are'} active and become CLEARED; all stay in the alarm history."
            )
        n = counts["anomalies"]
        return (
            f"Delete **{c.name}**? Its {n} anomal{'y is' if n == 1 else 'ies are'} deleted. {fate} "
            f"Scores already saved as telemetry (`_EAD_{c.telemetry_key}`, `_EID_{c.telemetry_key}`) "
            f"stay. This cannot be undone."
        )

    def delete(self, model_id: str) -> None:
        self._model(model_id)
        self._service.delete_model(model_id)
