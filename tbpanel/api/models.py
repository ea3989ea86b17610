"""``/api/tbpanel/...``: anomaly models and their tasks over REST (described in docs/openapi.json).

Models span the devices of a whole profile, so they are a tenant administrator's tool: customer
users get 403 here (they see anomalies through their devices' alarms and saved scores).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from ..anomaly.config import ModelConfig
from ..anomaly.service import RebuildRequired
from ..entities import User
from ..platform import Platform
from .base import DENIED, ID, ApiError, ApiHandler, Route
from .entities import TENANT_ADMIN, entity_uuid


class _TenantOwned(Protocol):
    @property
    def tenant_id(self) -> str | None: ...


Owned = TypeVar("Owned", bound=_TenantOwned)


def owned(thing: Owned | None, user: User, missing: str) -> Owned:
    """``thing`` if it belongs to ``user``'s tenant: 404 ``missing`` when there is none, 403
    when it is another tenant's."""
    if thing is None:
        raise ApiError(404, missing)
    if thing.tenant_id != user.tenant_id:
        raise ApiError(403, DENIED)
    return thing


class ModelsBase(ApiHandler):
    def admin(self):
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        return user

    def model_for(self, user: User, model_id: str):
        model = self.platform.anomaly.get_model(entity_uuid(model_id, "model id"))
        return owned(model, user, f"Anomaly model {model_id} is not found")

    def check_items(self, user, items) -> None:
        if items in (None, "all", "trained"):
            return
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ApiError(400, "items must be a list of device ids, 'all' or 'trained'")
        for item in items:
            self.platform.registry.check_device(user, entity_uuid(item, "device id"))

    def model_json(self, model) -> dict:
        return model.to_json(self.platform.anomaly.repo.count_anomalies(model.id))


def _config(data: Any) -> ModelConfig:
    if not isinstance(data, dict):
        raise ApiError(400, "config must be an object of model settings")
    unknown = sorted(set(data) - set(ModelConfig.param) - {"name"})
    if unknown:
        raise ApiError(400, f"unknown model settings: {', '.join(unknown)}")
    try:
        config = ModelConfig(**data)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"invalid model settings: {exc}") from None
    problems = config.validate()
    if problems:
        raise ApiError(400, "invalid model settings: " + "; ".join(problems))
    return config


class ModelsHandler(ModelsBase):
    """``GET`` lists the tenant's models; ``POST {"config": {...}, "refresh": {...}}`` creates one."""

    def get(self) -> None:
        user = self.admin()
        self.write_json([self.model_json(m) for m in self.platform.anomaly.list_models(user.tenant_id)])

    async def post(self) -> None:
        user = self.admin()
        body = self.json_object()
        config = _config(body.get("config", {}))
        self.check_items(user, list(config.items))
        refresh = body.get("refresh")
        if refresh is not None and not isinstance(refresh, dict):
            raise ApiError(400, "refresh must be an object of refresh settings")
        try:
            model = await self.in_thread(
                lambda: self.platform.anomaly.create_model(user.tenant_id, config, refresh=refresh)
            )
        except (ValueError, TypeError) as exc:  # param's check of a refresh setting
            raise ApiError(400, f"invalid refresh settings: {exc}") from None
        self.write_json(self.model_json(model))


class ModelHandler(ModelsBase):
    def get(self, model_id: str) -> None:
        self.write_json(self.model_json(self.model_for(self.admin(), model_id)))

    async def put(self, model_id: str) -> None:
        """``{"config": {changes}, "rebuild": false}``: 400 naming the knobs that need a rebuild."""
        user = self.admin()
        model = self.model_for(user, model_id)
        body = self.json_object()
        changes = body.get("config", {})
        if not isinstance(changes, dict):
            raise ApiError(400, "config must be an object of settings to change")
        _config({**model.config.to_dict(), **changes})
        self.check_items(user, changes.get("items"))
        try:
            model, task = await self.in_thread(
                lambda: self.platform.anomaly.update_model(model.id, changes, rebuild=bool(body.get("rebuild")))
            )
        except RebuildRequired as exc:
            raise ApiError(400, str(exc)) from None
        out = self.model_json(model)
        if task is not None:
            out["task"] = task.to_json()
        self.write_json(out)

    async def delete(self, model_id: str) -> None:
        model = self.model_for(self.admin(), model_id)
        await self.in_thread(self.platform.anomaly.delete_model, model.id)
        self.set_status(200)
        self.finish()


class BuildHandler(ModelsBase):
    def post(self, model_id: str) -> None:
        model = self.model_for(self.admin(), model_id)
        self.write_json(self.platform.anomaly.build(model.id).to_json())


class RefreshHandler(ModelsBase):
    """``GET``/``PUT`` the refresh settings; ``POST .../refresh/run`` runs once now."""

    def get(self, model_id: str) -> None:
        self.write_json(self.model_for(self.admin(), model_id).refresh.to_dict())

    def put(self, model_id: str) -> None:
        user = self.admin()
        model = self.model_for(user, model_id)
        body = self.json_object()
        self.check_items(user, body.get("items"))
        try:
            model = self.platform.anomaly.set_refresh(model.id, body)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None
        assert model.refresh is not None  # every stored model has refresh settings
        self.write_json(model.refresh.to_dict())


class RefreshRunHandler(ModelsBase):
    def post(self, model_id: str) -> None:
        model = self.model_for(self.admin(), model_id)
        try:
            task = self.platform.anomaly.refresh_now(model.id)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        self.write_json(task.to_json())


class ReprocessHandler(ModelsBase):
    """``{"startTs", "endTs", "items": [...]|"trained"|"all", "createAlarms", "saveTelemetry"}``."""

    def post(self, model_id: str) -> None:
        user = self.admin()
        model = self.model_for(user, model_id)
        body = self.json_object()
        start, end = body.get("startTs"), body.get("endTs")
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
            raise ApiError(400, "startTs and endTs (epoch ms integers) are required")
        items = body.get("items", "trained")
        self.check_items(user, items)
        try:
            task = self.platform.anomaly.reprocess(
                model.id,
                start,
                end,
                items,
                create_alarms=bool(body.get("createAlarms")),
                save_telemetry=bool(body.get("saveTelemetry")),
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        self.write_json(task.to_json())


class AnomaliesHandler(ModelsBase):
    """``GET ...?item=&startTs=&endTs=&active=``: anomalies by start time, ThingsBoard-style camelCase."""

    async def get(self, model_id: str) -> None:
        model = self.model_for(self.admin(), model_id)
        item = self.get_query_argument("item", None)
        active = self.get_query_argument("active", None)
        rows = await self.in_thread(
            lambda: self.platform.anomaly.anomalies(
                model.id,
                items=[item] if item else None,
                start=self.int_arg("startTs", None),
                end=self.int_arg("endTs", None),
                active=None if active is None else self.bool_arg("active", False),
            )
        )
        self.write_json([anomaly_json(r) for r in rows])


def anomaly_json(r: dict) -> dict:
    return {
        "id": r["id"],
        "modelId": r["model_id"],
        "item": r["item"],
        "startTs": r["start_ts"],
        "endTs": r["end_ts"],
        "score": r["score"],
        "scoreIndex": r["score_index"],
        "clusterId": r["cluster"],
        "detectedAt": r["detected_at"],
        "active": r["active"],
        "segments": r["n_segments"],
        "suppressed": r["suppressed"],
    }


class ModelTasksHandler(ModelsBase):
    def get(self, model_id: str) -> None:
        model = self.model_for(self.admin(), model_id)
        limit = self.int_arg("limit", 100, minimum=1, maximum=10_000)
        self.write_json([t.to_json() for t in self.platform.tasks.list(model_id=model.id, limit=limit)])


class TaskHandler(ModelsBase):
    def task_for(self, user: User, task_id: str):
        return owned(self.platform.tasks.get(entity_uuid(task_id, "task id")), user, f"Task {task_id} is not found")

    def get(self, task_id: str) -> None:
        self.write_json(self.task_for(self.admin(), task_id).to_json())


class TaskCancelHandler(TaskHandler):
    def post(self, task_id: str) -> None:
        task = self.task_for(self.admin(), task_id)
        cancelled = self.platform.tasks.cancel(task.id)
        after = self.platform.tasks.get(task.id)
        assert after is not None  # tasks stay in analytics.sqlite
        self.write_json({"cancelRequested": cancelled, "task": after.to_json()})


class ExperimentHandler(ModelsBase):
    """``{"variants": {"name": {overrides}}, "startTs", "endTs", "items"}`` → a task whose result
    compares the stored model with each variant; nothing of the model is changed."""

    def post(self, model_id: str) -> None:
        user = self.admin()
        model = self.model_for(user, model_id)
        body = self.json_object()
        variants = body.get("variants")
        if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
            raise ApiError(400, "variants must be an object of {name: {setting: value}}")
        for overrides in variants.values():
            _config({**model.config.to_dict(), **overrides})
        start, end = body.get("startTs"), body.get("endTs")
        if not isinstance(start, int) or not isinstance(end, int) or start >= end:
            raise ApiError(400, "startTs < endTs (epoch ms integers) are required")
        items = body.get("items", "trained")
        self.check_items(user, items)
        task = self.platform.anomaly.submit_experiment(model.id, variants, start, end, items)
        self.write_json(task.to_json())


def model_patterns(platform: Platform) -> list[Route]:
    p = {"platform": platform}
    m = rf"/api/tbpanel/models/{ID}"
    return [
        (r"/api/tbpanel/models/?", ModelsHandler, p),
        (rf"{m}/build/?", BuildHandler, p),
        (rf"{m}/refresh/run/?", RefreshRunHandler, p),
        (rf"{m}/refresh/?", RefreshHandler, p),
        (rf"{m}/reprocess/?", ReprocessHandler, p),
        (rf"{m}/anomalies/?", AnomaliesHandler, p),
        (rf"{m}/tasks/?", ModelTasksHandler, p),
        (rf"{m}/experiments/?", ExperimentHandler, p),
        (rf"{m}/?", ModelHandler, p),
        (rf"/api/tbpanel/tasks/{ID}/cancel/?", TaskCancelHandler, p),
        (rf"/api/tbpanel/tasks/{ID}/?", TaskHandler, p),
    ]
