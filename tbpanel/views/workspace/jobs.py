"""The Jobs tab's view model: the periodic refresh of one model and where its scores are saved.

Refresh settings are a draft :class:`RefreshSettings` until :meth:`JobsDraft.save`; the storage
frequency (a model setting that changes without a rebuild) is saved with them. The advice on the
storage frequency is the reference contract's, worded for people.
"""

from __future__ import annotations

import param

from ...anomaly.service import RefreshSettings
from ...clock import HOUR_MS, duration_text, now_ms, utc_text
from ...jobs.schedule import next_run
from .model_data import profile_devices

#: storage frequencies offered (ms)
FREQUENCIES = {
    "1 min": 60_000,
    "5 min": 300_000,
    "10 min": 600_000,
    "15 min": 900_000,
    "30 min": 1_800_000,
    "1 h": HOUR_MS,
    "2 h": 2 * HOUR_MS,
    "6 h": 6 * HOUR_MS,
    "12 h": 12 * HOUR_MS,
    "1 day": 24 * HOUR_MS,
}


class JobsDraft(param.Parameterized):
    """Unsaved refresh settings, the storage frequency and what the schedule means."""

    refresh: param.ClassSelector[RefreshSettings] = param.ClassSelector(class_=RefreshSettings)  # type: ignore[assignment]  # required, never None
    storage_frequency_ms = param.Integer(default=HOUR_MS, bounds=(1, None))
    message = param.String(default="")

    def __init__(self, platform, model, **params):
        params.setdefault("refresh", RefreshSettings(**model.refresh.to_dict()))
        params.setdefault("storage_frequency_ms", int(model.config.storage_frequency_ms))
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.service = platform.anomaly
        self.trained = self.service.trained(model.id)
        self.devices = profile_devices(platform, model)

    def segment_bound_ms(self) -> int | None:
        """The storage frequency must stay below this: the segment (fixed) or its step (sliding)."""
        if self.trained is None:
            return None
        r = self.trained.resolved
        return int(r.segment_ms) if r.window == "fixed" else int(r.step_ms())

    def advice(self) -> list[str]:
        """What to know about the chosen storage frequency (empty: nothing to warn about)."""
        f = int(self.storage_frequency_ms)
        out = []
        bound = self.segment_bound_ms()
        if f < HOUR_MS:
            out.append(
                f"A storage frequency of {duration_text(f)} is below the advised minimum of 1 hour: "
                "many small points per device."
            )
        if bound is not None and f >= bound:
            what = "segment length" if self.trained.resolved.window == "fixed" else "sliding step"
            out.append(
                f"A storage frequency of {duration_text(f)} is not below the model's {what} "
                f"({duration_text(bound)}): a bucket can hold several segments and shows only the highest."
            )
        if self.model.last_refresh_run_ms is not None and f != int(self.model.config.storage_frequency_ms):
            out.append("Changing the frequency after the first refresh may leave overlapping saved points.")
        return out

    def schedule_text(self) -> str:
        r = self.refresh
        if not r.enabled:
            return "Refresh is off: no new anomalies are found and no scores are saved."
        due = next_run(
            self.model.last_refresh_run_ms, now_ms(), r.every, r.unit, at_unit_start=r.at_unit_start, tz=r.tz
        )
        last = utc_text(self.model.last_refresh_run_ms) or "never"
        items = f"{len(r.items)} selected device(s)" if r.items else f"all {len(self.devices)} devices of the profile"
        return (
            f"Every {r.every} {r.unit.lower()}{'s' if r.every > 1 else ''}"
            f"{' at the start of the unit' if r.at_unit_start else ''} over {items}; last run {last} UTC, "
            f"next {utc_text(max(due, now_ms()))} UTC."
        )

    def changes(self) -> dict:
        stored = self.model.refresh.to_dict()
        return {k: v for k, v in self.refresh.to_dict().items() if stored.get(k) != v}

    def save(self) -> bool:
        """Store the refresh settings and the storage frequency; False (with a message) if refused."""
        try:
            if int(self.storage_frequency_ms) != int(self.model.config.storage_frequency_ms):
                self.service.update_model(self.model.id, {"storage_frequency_ms": int(self.storage_frequency_ms)})
            self.model = self.service.set_refresh(self.model.id, self.refresh.to_dict())
        except ValueError as exc:
            self.message = f"Not saved: {exc}"
            return False
        self.message = "Saved. " + self.schedule_text()
        return True
