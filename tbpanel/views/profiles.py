"""The ``/profiles`` page's view model: a tenant administrator's device profiles and the
alarm rules of the one opened, as forms (no Panel import; ``ui/profiles.py`` draws it).

A form is one param object per part of ThingsBoard's ``DeviceProfileAlarm`` (alarm →
severity rules → conditions), read from and written back to the profile's JSON; what a
form cannot show (COMPLEX predicates, CUSTOM schedules, a dashboard id) is kept as it was.
:meth:`ProfilesView.save` checks every form first and puts each error on its field
(``errors``); only when all are clean, and :func:`~tbpanel.rules.alarm_rules.parse_alarms`
accepts the result, is the profile saved through the registry. Nothing is saved otherwise.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import param

from ..alarms.model import SEVERITIES
from ..errors import EntityError, InvalidInput, PermissionDenied
from ..rules import alarm_rules as ar

TENANT_ADMIN = "TENANT_ADMIN"
KEY_TYPES = ("TIME_SERIES", "ATTRIBUTE", "ENTITY_FIELD")
VALUE_TYPES = ("NUMERIC", "STRING", "BOOLEAN")
ALL_OPERATIONS = tuple(dict.fromkeys(op for kind in VALUE_TYPES for op in ar.OPERATIONS[kind]))
UNITS = tuple(ar.TIME_UNITS)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _hhmm(ms: int) -> str:
    minutes = int(ms) // 60_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class Form(param.Parameterized):
    """A part of the alarm rules being edited; ``errors`` maps a parameter to what is wrong with it."""

    errors = param.Dict(default={}, doc="{parameter name: message} from the last check.")

    def check(self) -> bool:
        """Fill ``errors``; True when there are none (in this form and the ones it holds)."""
        raise NotImplementedError


class ConditionForm(Form):
    """One key filter: ``key`` ``operation`` ``threshold`` (or the value of ``threshold_attribute``)."""

    key_type: param.Selector[str] = param.Selector(default="TIME_SERIES", objects=list(KEY_TYPES))
    key = param.String(default="", doc="Telemetry key, attribute or device field name.")
    value_type: param.Selector[str] = param.Selector(default="NUMERIC", objects=list(VALUE_TYPES))
    operation: param.Selector[str] = param.Selector(default="GREATER", objects=list(ALL_OPERATIONS))
    threshold = param.String(default="", doc="The static threshold (the default when an attribute is named).")
    threshold_attribute = param.String(default="", doc="Take the threshold from this attribute (optional).")
    threshold_source: param.Selector[str] = param.Selector(default="CURRENT_DEVICE", objects=list(ar.SOURCE_TYPES))
    inherit = param.Boolean(default=False, doc="Device → customer → tenant when the attribute is missing.")

    def __init__(self, raw: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(**params)
        #: a filter this form cannot show (COMPLEX predicate, CONSTANT key), kept as it was
        self.raw: dict[str, Any] | None = None
        if raw is not None:
            self._read(raw)

    def _read(self, raw: dict[str, Any]) -> None:
        key, pred = raw.get("key") or {}, raw.get("predicate") or {}
        if key.get("type") not in KEY_TYPES or pred.get("type") not in VALUE_TYPES:
            self.raw = raw
            self.key = str(key.get("key") or "")
            return
        value = pred.get("value") or {}
        dyn = value.get("dynamicValue") or {}
        default = value.get("defaultValue")
        self.param.update(
            key_type=key["type"],
            key=str(key.get("key") or ""),
            value_type=pred["type"],
            operation=pred.get("operation") if pred.get("operation") in ALL_OPERATIONS else "EQUAL",
            threshold=""
            if default is None
            else ("true" if default is True else "false" if default is False else str(default)),
            threshold_attribute=str(dyn.get("sourceAttribute") or ""),
            threshold_source=dyn.get("sourceType") if dyn.get("sourceType") in ar.SOURCE_TYPES else "CURRENT_DEVICE",
            inherit=bool(dyn.get("inherit")),
        )

    @property
    def summary(self) -> str:
        if self.raw is not None:
            return f"{self.key or 'condition'}: a complex condition (kept as it is)"
        source = f" (or {self.threshold_attribute})" if self.threshold_attribute else ""
        return f"{self.key} {self.operation} {self.threshold}{source}"

    def check(self) -> bool:
        errors: dict[str, str] = {}
        if self.raw is None:
            if not self.key.strip():
                errors["key"] = "Enter the key to check."
            elif self.key_type == "ENTITY_FIELD" and self.key not in ar.ENTITY_FIELDS:
                errors["key"] = f"A device field is one of {', '.join(ar.ENTITY_FIELDS)}."
            if self.operation not in ar.OPERATIONS[self.value_type]:
                errors["operation"] = f"{self.value_type} conditions use {', '.join(ar.OPERATIONS[self.value_type])}."
            text = self.threshold.strip()
            if not text and not self.threshold_attribute.strip():
                errors["threshold"] = "Enter a threshold, or an attribute to take it from."
            elif text and self.value_type == "NUMERIC":
                try:
                    if not math.isfinite(float(text)):
                        raise ValueError
                except ValueError:
                    errors["threshold"] = f"{text!r} is not a number."
            elif text and self.value_type == "BOOLEAN" and text.lower() not in ("true", "false"):
                errors["threshold"] = "Enter true or false."
        self.errors = errors
        return not errors

    def to_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        text = self.threshold.strip()
        default: Any = None
        if text:
            default = (
                float(text)
                if self.value_type == "NUMERIC"
                else text.lower() == "true"
                if self.value_type == "BOOLEAN"
                else text
            )
        dyn = None
        if self.threshold_attribute.strip():
            dyn = {
                "sourceType": self.threshold_source,
                "sourceAttribute": self.threshold_attribute.strip(),
                "inherit": self.inherit,
            }
        predicate: dict[str, Any] = {
            "type": self.value_type,
            "operation": self.operation,
            "value": {"defaultValue": default, "userValue": None, "dynamicValue": dyn},
        }
        if self.value_type == "STRING":
            predicate["ignoreCase"] = False
        return {
            "key": {"type": self.key_type, "key": self.key.strip()},
            "valueType": self.value_type,
            "value": None,
            "predicate": predicate,
        }


class RuleForm(Form):
    """One severity's create rule (or the clear rule, ``severity`` None): conditions, spec, schedule, details."""

    severity: param.Selector[str | None] = param.Selector(default="CRITICAL", objects=[*SEVERITIES, None])
    conditions = param.List(default=[], item_type=ConditionForm)
    spec_type: param.Selector[str] = param.Selector(default="SIMPLE", objects=list(ar.SPEC_TYPES))
    count = param.Integer(default=1, doc="DURATION: how many units; REPEATING: how many messages in a row.")
    unit: param.Selector[str] = param.Selector(default="MINUTES", objects=list(UNITS))
    schedule_type: param.Selector[str] = param.Selector(default="ANY_TIME", objects=list(ar.SCHEDULE_TYPES))
    timezone = param.String(default="UTC")
    days = param.List(default=list(WEEKDAYS), item_type=str)
    starts = param.String(default="00:00", doc="HH:MM local time.")
    ends = param.String(default="00:00", doc="HH:MM local time (00:00: midnight).")
    details = param.String(default="", doc="Alarm details; ${key} is replaced by the key's value.")

    def __init__(self, raw: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.raw: dict[str, Any] = dict(raw or {})
        #: a CUSTOM schedule, kept as it was
        self.raw_schedule: dict[str, Any] | None = None
        if raw is not None:
            self._read(raw)
        if not self.conditions:
            self.conditions = [ConditionForm()]

    def _read(self, raw: dict[str, Any]) -> None:
        cond = raw.get("condition") or {}
        spec = cond.get("spec") or {"type": "SIMPLE"}
        schedule = raw.get("schedule") or {"type": "ANY_TIME"}
        updates: dict[str, Any] = {
            "conditions": [ConditionForm(f) for f in cond.get("condition") or [] if isinstance(f, dict)],
            "spec_type": spec.get("type") if spec.get("type") in ar.SPEC_TYPES else "SIMPLE",
            "details": str(raw.get("alarmDetails") or ""),
        }
        pred = spec.get("predicate") or {}
        n = pred.get("defaultValue", spec.get("value", spec.get("count")))
        if isinstance(n, (int, float)) and not isinstance(n, bool):
            updates["count"] = int(n)
        if spec.get("unit") in UNITS:
            updates["unit"] = spec["unit"]
        stype = schedule.get("type")
        if stype == "CUSTOM":
            self.raw_schedule = schedule
            updates["schedule_type"] = "CUSTOM"
        elif stype == "SPECIFIC_TIME":
            days = [WEEKDAYS[d - 1] for d in schedule.get("daysOfWeek") or [] if isinstance(d, int) and 1 <= d <= 7]
            updates.update(
                schedule_type="SPECIFIC_TIME",
                timezone=str(schedule.get("timezone") or "UTC"),
                days=days,
                starts=_hhmm(schedule.get("startsOn") or 0),
                ends=_hhmm(schedule.get("endsOn") or 0),
            )
        self.param.update(**updates)

    def check(self) -> bool:
        errors: dict[str, str] = {}
        ok = all([c.check() for c in self.conditions])
        if not self.conditions:
            errors["conditions"] = "Add at least one condition."
        if self.spec_type != "SIMPLE" and self.count < 1:
            errors["count"] = "At least 1."
        if self.schedule_type == "SPECIFIC_TIME":
            try:
                ar.zone_name(self.timezone, "timezone")
            except InvalidInput:
                errors["timezone"] = f"{self.timezone!r} is not a time zone (e.g. Europe/Berlin)."
            if not self.days:
                errors["days"] = "Pick at least one day."
            for name in ("starts", "ends"):
                if not _TIME.match(getattr(self, name).strip()):
                    errors[name] = "Enter a time as HH:MM."
        self.errors = errors
        return ok and not errors

    def _schedule(self) -> dict[str, Any] | None:
        if self.schedule_type == "CUSTOM" and self.raw_schedule is not None:
            return self.raw_schedule
        if self.schedule_type != "SPECIFIC_TIME":
            return {"type": "ANY_TIME"}

        def ms(text: str) -> int:
            h, m = text.strip().split(":")
            return (int(h) * 60 + int(m)) * 60_000

        return {
            "type": "SPECIFIC_TIME",
            "timezone": self.timezone.strip(),
            "daysOfWeek": sorted(WEEKDAYS.index(d) + 1 for d in self.days),
            "startsOn": ms(self.starts),
            "endsOn": ms(self.ends),
            "dynamicValue": None,
        }

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.spec_type}
        if self.spec_type != "SIMPLE":
            spec["predicate"] = {"defaultValue": self.count, "userValue": None, "dynamicValue": None}
        if self.spec_type == "DURATION":
            spec["unit"] = self.unit
        return {
            **self.raw,
            "condition": {"condition": [c.to_json() for c in self.conditions], "spec": spec},
            "schedule": self._schedule(),
            "alarmDetails": self.details or None,
            "dashboardId": self.raw.get("dashboardId"),
        }


class AlarmForm(Form):
    """One alarm type: its create rules (one per severity) and an optional clear rule."""

    alarm_type = param.String(default="")
    create_rules = param.List(default=[], item_type=RuleForm)
    clear_rule = param.ClassSelector(class_=RuleForm, default=None, allow_None=True)

    def __init__(self, raw: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.raw: dict[str, Any] = dict(raw or {"id": str(uuid.uuid4())})
        if raw is not None:
            rules = raw.get("createRules") or {}
            clear = raw.get("clearRule")
            self.param.update(
                alarm_type=str(raw.get("alarmType") or ""),
                create_rules=[
                    RuleForm(r, severity=s) for s, r in rules.items() if s in SEVERITIES and isinstance(r, dict)
                ],
                clear_rule=RuleForm(clear, severity=None) if isinstance(clear, dict) else None,
            )
        if not self.create_rules:
            self.create_rules = [RuleForm(severity="CRITICAL")]

    def add_severity(self) -> RuleForm:
        used = {r.severity for r in self.create_rules}
        free = [s for s in SEVERITIES if s not in used]
        rule = RuleForm(severity=free[0] if free else "INDETERMINATE")
        self.create_rules = [*self.create_rules, rule]
        return rule

    def check(self) -> bool:
        errors: dict[str, str] = {}
        ok = all([r.check() for r in self.create_rules] + ([self.clear_rule.check()] if self.clear_rule else []))
        if not self.alarm_type.strip():
            errors["alarm_type"] = "Enter the alarm type (the alarms' name)."
        if not self.create_rules:
            errors["create_rules"] = "Add a rule for at least one severity."
        seen: set[str | None] = set()
        for r in self.create_rules:
            if r.severity in seen:
                r.errors = {**r.errors, "severity": f"{r.severity} has a rule already."}
                ok = False
            seen.add(r.severity)
        self.errors = errors
        return ok and not errors

    def to_json(self) -> dict[str, Any]:
        return {
            "propagate": False,
            "propagateToOwner": False,
            "propagateToTenant": False,
            "propagateRelationTypes": None,
            **self.raw,
            "alarmType": self.alarm_type.strip(),
            "createRules": {r.severity: r.to_json() for r in self.create_rules},
            "clearRule": self.clear_rule.to_json() if self.clear_rule is not None else None,
        }


class ProfilesView(param.Parameterized):
    """A tenant administrator's profiles and the alarm rules of the opened one."""

    profiles = param.List(default=[], doc="[{id, name, default, alarms}] of the tenant's profiles.")
    profile_id = param.String(default="", doc="The opened profile.")
    profile_name = param.String(default="")
    alarms = param.List(default=[], item_type=AlarmForm)
    revision = param.Integer(default=0, doc="Bumped whenever a profile is shown (a page redraws its forms).")
    message = param.String(default="", doc="What the last save did.")
    error = param.String(default="", doc="Why the last save stored nothing.")

    def __init__(self, platform: Any, user: Any, **params: Any) -> None:
        super().__init__(**params)
        if user.authority != TENANT_ADMIN:
            raise PermissionDenied("Device profiles are for tenant administrators")
        self.platform, self.user = platform, user

    # -- reads (blocking: the page runs them off the loop) ----------------------------------
    def load_profiles(self) -> list[dict[str, Any]]:
        items, _ = self.platform.registry.list_device_profiles(
            self.user.tenant_id, page_size=1000, sort_property="name", sort_order="ASC"
        )
        return [
            {
                "id": p.id,
                "name": p.name,
                "default": p.default,
                "alarms": len((p.profile_data or {}).get("alarms") or []),
            }
            for p in items
        ]

    def read_profile(self, profile_id: str) -> Any:
        """The profile if it is this tenant's (PermissionDenied / NotFound otherwise)."""
        profile = self.platform.registry.get_device_profile(profile_id)
        if profile.tenant_id != self.user.tenant_id:
            raise PermissionDenied("That device profile belongs to another tenant")
        return profile

    # -- applying what was read -----------------------------------------------------------
    def show_profile(self, profile: Any) -> None:
        raw = (profile.profile_data or {}).get("alarms") or []
        self.param.update(
            profile_id=profile.id,
            profile_name=profile.name,
            alarms=[AlarmForm(a) for a in raw if isinstance(a, dict)],
            message="",
            error="",
            revision=self.revision + 1,
        )

    def open(self, profile_id: str) -> None:
        self.show_profile(self.read_profile(profile_id))

    # -- editing --------------------------------------------------------------------------
    def add_alarm(self) -> AlarmForm:
        form = AlarmForm()
        self.alarms = [*self.alarms, form]
        return form

    def remove_alarm(self, form: AlarmForm) -> None:
        self.alarms = [a for a in self.alarms if a is not form]

    def alarms_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.alarms]

    def check(self) -> bool:
        """Check every form (errors on their fields) and the alarm types' uniqueness."""
        ok = all([a.check() for a in self.alarms])
        seen: dict[str, AlarmForm] = {}
        for a in self.alarms:
            name = a.alarm_type.strip()
            if name and name in seen:
                a.errors = {**a.errors, "alarm_type": f"Another alarm is called {name!r} already."}
                ok = False
            seen[name] = a
        return ok

    def save(self) -> bool:
        """Check, then store the alarm rules in the profile (blocking). False: nothing stored,
        ``error`` and the forms' ``errors`` say why. (A page runs :meth:`prepare` on its
        document, :meth:`store` off the loop, then :meth:`stored` or :meth:`refused`.)"""
        if not self.prepare():
            return False
        try:
            saved = self.store()
        except EntityError as exc:
            self.refused(exc)
            return False
        self.stored(saved)
        return True

    def prepare(self) -> bool:
        """Check every form; False (with ``error``) when something must be corrected first."""
        self.message = self.error = ""
        if not self.profile_id:
            self.error = "Open a profile first."
            return False
        if not self.check():
            self.error = "Nothing was saved: correct the fields marked below."
            return False
        return True

    def store(self) -> Any:
        """Write the forms' alarm rules into the profile (blocking; changes no parameter).
        Raises InvalidInput (rules that cannot run), PermissionDenied, NotFound."""
        alarms = self.alarms_json()
        ar.parse_alarms({"alarms": alarms}, "alarm rules")
        body = self.read_profile(self.profile_id).to_json()
        body["profileData"] = {**body["profileData"], "alarms": alarms}
        return self.platform.registry.save_device_profile(self.user.tenant_id, body)

    def stored(self, profile: Any) -> None:
        self.show_profile(profile)
        n = len(self.alarms)
        self.message = f"Saved {n} alarm rule{'s' if n != 1 else ''} of profile {profile.name!r}."
        self.profiles = [{**p, "alarms": n} if p["id"] == profile.id else p for p in self.profiles]

    def refused(self, exc: Exception) -> None:
        self.error = f"Nothing was saved: {exc}"
