"""The model creation wizard as a param object: intent → data → readiness → tuning → review.

Each step reads and writes plain parameters; :meth:`ModelWizard.config` turns the choices into
a :class:`~tbpanel.anomaly.config.ModelConfig` through the intent presets, and the *Advanced*
section edits that config directly (its per-field validation is the config's own). No Panel
import: the view in ``tbpanel.ui.workspace.wizard`` renders it, tests drive it without a browser.
"""

from __future__ import annotations

import re

import param

from ...anomaly.config import INTENTS, SENSITIVITIES, ModelConfig, nice_duration
from ...clock import DAY_MS, duration_text, now_ms
from .readiness import DataReadiness, assess
from .settings import device_options

STEPS = ("Intent", "Data", "Readiness", "Sensitivity & granularity", "Review & build")
INTENT_TEXT = {
    "quick_scan": ("Quick scan", "One pass over history for anything unusual: coarse fixed windows."),
    "operational_monitoring": (
        "Operational monitoring",
        "Watch live data and follow slow changes of normal: sliding windows, adaptive re-fits.",
    ),
    "comparative_analysis": (
        "Comparative analysis",
        "Compare devices by their daily statistics: feature-based, day-long segments.",
    ),
    "health_monitoring": ("Health monitoring", "Catch slow degradation: long sliding windows."),
}
SENSITIVITY_TEXT = {
    "low": "Low: only the clearest 0.5 % of behaviour counts as anomalous",
    "medium": "Medium: the most unusual 1 %",
    "high": "High: the most unusual 2 % (more alerts)",
}
RANGES = {"last 7 days": 7 * DAY_MS, "last 30 days": 30 * DAY_MS, "last 90 days": 90 * DAY_MS, "custom": None}
#: points per segment offered as granularities (the data's step times these)
GRANULARITY_POINTS = (12, 24, 48, 96)
SCORE_KEYS = ("_EAD_", "_EID_")
#: where a device is, not how it behaves: offered, not chosen by default (the demo's map routes)
LOCATION_KEYS = ("latitude", "longitude")


def recommended_segment(intent: str, step_ms: float) -> int:
    """The segment length the wizard recommends for ``intent`` at a data step: the intent preset's.

    The one recommendation: readiness counts segments of this length and the granularity step
    marks it, so both speak of the same segments (sensitivity does not change it)."""
    return ModelConfig.preset(intent, "medium", step_ms).segment_ms


class ModelWizard(param.Parameterized):
    """The wizard's choices for one tenant; ``step`` is the index into :data:`STEPS`."""

    tenant_id = param.String()
    step = param.Integer(default=0, bounds=(0, len(STEPS) - 1))
    intent: param.Selector[str] = param.Selector(default="operational_monitoring", objects=list(INTENTS))
    device_type: param.Selector[str | None] = param.Selector(
        default=None, objects=[], allow_None=True, check_on_set=False
    )
    devices = param.Dict(default={}, doc="name -> id of the profile's devices.")
    items = param.List(default=[], item_type=str, doc="Device ids; empty = every device of the profile.")
    keys_available = param.List(default=[], item_type=str)
    fields = param.List(default=[], item_type=str)
    range_preset: param.Selector[str] = param.Selector(default="last 30 days", objects=list(RANGES))
    start_ms = param.Integer(default=0)
    end_ms = param.Integer(default=0)
    readiness = param.ClassSelector(class_=DataReadiness, default=None, allow_None=True)
    sensitivity: param.Selector[str] = param.Selector(default="medium", objects=list(SENSITIVITIES))
    segment_ms = param.Integer(default=0, doc="Chosen granularity (segment length).")
    model_name = param.String(default="", doc="The new model's name.")
    config = param.ClassSelector(
        class_=ModelConfig, default=None, allow_None=True, doc="The draft the review step builds (Advanced edits it)."
    )

    def __init__(self, platform, **params):
        super().__init__(**params)
        self._platform = platform
        types = platform.registry.device_types(self.tenant_id)
        self.param.device_type.objects = types
        if types and self.device_type is None:
            self.device_type = types[0]
        else:
            self._load_profile()
        self.set_range(self.range_preset)

    # -- data step -------------------------------------------------------------------------------
    @param.depends("device_type", watch=True)
    def _load_profile(self) -> None:
        """Devices and numeric keys of the chosen profile (saved score series left out)."""
        if not self.device_type:
            self.param.update(devices={}, items=[], keys_available=[], fields=[])
            return
        devices = self._platform.registry.all_devices(self.tenant_id, type=self.device_type)
        keys = sorted({k for d in devices for k in self._platform.store.keys(d.id) if not k.startswith(SCORE_KEYS)})
        self.param.update(
            devices={d.name: d.id for d in devices},
            items=[],
            keys_available=keys,
            fields=[k for k in keys if k not in LOCATION_KEYS],
            model_name=self.model_name or f"{self.device_type} anomalies",
        )

    def set_range(self, preset: str, start_ms: int | None = None, end_ms: int | None = None) -> None:
        """A preset ends now; ``custom`` takes ``start_ms``/``end_ms``."""
        span = RANGES[preset]
        if span is None:
            if start_ms is None or end_ms is None:
                start_ms, end_ms = self.start_ms, self.end_ms
        else:
            end_ms = now_ms()
            start_ms = end_ms - span
        self.param.update(range_preset=preset, start_ms=int(start_ms), end_ms=int(end_ms))

    def item_ids(self) -> list[str]:
        return list(self.items) or list(self.devices.values())

    # -- readiness -------------------------------------------------------------------------------
    def check_readiness(self) -> DataReadiness:
        """Read the store (blocking: call it off the server loop)."""
        intent = self.intent
        r = assess(
            self._platform.store,
            self.item_ids(),
            list(self.fields),
            self.start_ms,
            self.end_ms,
            segment_for=lambda step: recommended_segment(intent, step),
        )
        self.readiness = r
        if r.step_ms:
            self.segment_ms = self.recommended_segment()
        return r

    # -- tuning ----------------------------------------------------------------------------------
    @property
    def data_step_ms(self) -> int:
        return self.readiness.step_ms if self.readiness is not None and self.readiness.step_ms else 60_000

    def recommended_segment(self) -> int:
        return recommended_segment(self.intent, self.data_step_ms)

    def device_options(self, chosen: list[str] | None = None) -> dict[str, str]:
        """Name -> id for a device picker of the profile (chosen ids it lacks stay pickable)."""
        return device_options(self.devices, list(self.items if chosen is None else chosen))

    def granularities(self) -> dict[str, int]:
        """Label -> segment length: multiples of the data's step rounded to calendar durations,
        plus the intent's recommendation."""
        step = self.data_step_ms
        rec = self.recommended_segment()
        options = sorted({nice_duration(n * step) for n in GRANULARITY_POINTS} | {rec})
        out = {}
        for seg in options:
            label = f"{duration_text(seg, exact=True)} segments (~{seg / step:.0f} points each)"
            out[label + (" · recommended" if seg == rec else "")] = seg
        return out

    @param.depends("intent", watch=True)
    def _intent_changed(self) -> None:
        if self.readiness is not None:
            self.segment_ms = self.recommended_segment()

    # -- review ----------------------------------------------------------------------------------
    def make_config(self) -> ModelConfig:
        """The preset for the choices, with the data, range, name and granularity filled in."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_name.strip()).strip("_") or "anomaly"
        keys = list(self.fields)
        if self.readiness is not None and self.readiness.keys:
            keys = [k for k in keys if k in self.readiness.keys] or keys
        cfg = ModelConfig.preset(
            self.intent,
            self.sensitivity,
            self.data_step_ms,
            name=self.model_name.strip(),
            device_type=self.device_type or "",
            fields=keys,
            items=list(self.items),
            train_start=int(self.start_ms),
            train_end=int(self.end_ms),
            telemetry_key=slug.lower(),
            alarm_type=f"Anomaly: {self.model_name.strip()}"[:100],
        )
        if self.segment_ms:
            cfg.segment_ms = int(self.segment_ms)
        self.config = cfg
        return cfg

    def problems(self, step: int | None = None) -> list[str]:
        """Why the user cannot leave ``step`` (default: the current one) yet."""
        step = self.step if step is None else step
        out = []
        if step == 1:
            if not self.device_type:
                out.append("Choose a device profile.")
            elif not self.devices:
                out.append(f"No devices of profile {self.device_type!r}.")
            if not self.fields:
                out.append("Choose at least one telemetry key.")
            if self.end_ms <= self.start_ms:
                out.append("The date range must end after it starts.")
        elif step == 2:
            if self.readiness is None:
                out.append("Check the data first.")
            elif self.readiness.points == 0:
                out.append("There is no data to learn from: pick other devices, keys or dates.")
        elif step == 4:
            cfg = self.config
            if cfg is None:
                out.append("Nothing to build yet.")
            else:
                out += cfg.validate()
                if not cfg.name.strip():
                    out.append("name: Give the model a name.")
                names = {m.config.name for m in self._platform.anomaly.list_models(self.tenant_id)}
                if cfg.name in names:
                    out.append(f"name: A model called {cfg.name!r} exists; pick another name.")
        return list(dict.fromkeys(out))

    def next(self) -> list[str]:
        """Advance if the current step is complete; else its problems."""
        problems = self.problems()
        if not problems and self.step < len(STEPS) - 1:
            if self.step == 3:
                self.make_config()
            self.step += 1
        return problems

    def back(self) -> None:
        if self.step > 0:
            self.step -= 1

    def build(self):
        """Create the model from the draft and start its build: ``(model, task)``."""
        problems = self.problems(4)
        if problems:
            raise ValueError("; ".join(problems))
        service = self._platform.anomaly
        model = service.create_model(self.tenant_id, self.config)
        return model, service.build(model.id)
