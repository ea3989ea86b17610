"""``/profiles``: the tenant's device profiles and the alarm rules of one, as forms
(:class:`~tbpanel.views.profiles.ProfilesView` draws nothing; this module only draws it).

Reads and the save run off the loop through :class:`~tbpanel.ui.background.Background`;
the forms are checked on the page first, and every error shows under its field.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from ..alarms.model import SEVERITIES, severity_colour
from ..rules import alarm_rules as ar
from ..views.profiles import WEEKDAYS, AlarmForm, ConditionForm, Form, ProfilesView, RuleForm
from .background import Background
from .layout import tenant_admin_template


def _error_pane(form: Form, name: str) -> pn.pane.HTML:
    """The message under a field: what ``form.errors`` says about ``name``, kept current."""

    def render() -> str:
        text = form.errors.get(name, "")
        return (
            f'<div class="field-error" data-field="{name}" style="color:#d32f2f;font-size:12px">{html.escape(text)}</div>'
            if text
            else ""
        )

    pane = pn.pane.HTML(render(), margin=(0, 5))
    form.param.watch(lambda _: setattr(pane, "object", render()), "errors")
    return pane


def _field(form: Form, name: str, widget: pn.widgets.Widget) -> pn.Column:
    return pn.Column(widget, _error_pane(form, name), margin=0)


def _select(form: Form, name: str, options: list[Any], label: str, css: str, width: int = 150) -> pn.widgets.Select:
    """A Select bound to ``form.<name>`` (options given here, not the parameter's)."""
    w = pn.widgets.Select(name=label, options=options, value=getattr(form, name), css_classes=[css], width=width)
    w.param.watch(lambda e: setattr(form, name, e.new), "value")
    return w


def _text(form: Form, name: str, label: str, css: str, width: int = 150, placeholder: str = "") -> pn.widgets.TextInput:
    return pn.widgets.TextInput.from_param(
        form.param[name], name=label, css_classes=[css], width=width, placeholder=placeholder
    )


def _button(label: str, css: str, action: Callable[[], Any], kind: str = "default") -> pn.widgets.Button:
    b = pn.widgets.Button(name=label, css_classes=[css], button_type=kind, width=max(90, 9 * len(label)))
    b.on_click(lambda _: action())
    return b


class ProfilesPage(pn.viewable.Viewer):
    """Profile list, the opened profile's alarm rules as forms, Save."""

    view = param.ClassSelector(class_=ProfilesView)

    def __init__(self, executor: Any, wanted: str = "", **params: Any) -> None:
        super().__init__(**params)
        self._bg = Background(executor)
        self._wanted = wanted
        self._select = pn.widgets.Select(name="Device profile", options={}, css_classes=["profile-select"], width=320)
        self._select.param.watch(lambda e: self._open(e.new), "value")
        self._list = pn.pane.HTML("Loading profiles…", css_classes=["profile-list"], sizing_mode="stretch_width")
        self._editor = pn.Column(css_classes=["alarm-rules"], sizing_mode="stretch_width")
        self._status = pn.pane.HTML("", css_classes=["profiles-status"], sizing_mode="stretch_width")
        self._save = _button("Save alarm rules", "save-rules", self.save, "primary")
        self._add = _button("+ Alarm rule", "add-alarm", self._add_alarm)
        self.view.param.watch(lambda *_: self._draw(), ["alarms", "revision"])
        self.view.param.watch(lambda *_: self._draw_status(), ["message", "error"])
        self.view.param.watch(lambda _: self._draw_list(), "profiles")
        self._bg.run("profiles", self.view.load_profiles, self._listed, self._failed)

    # -- reads ------------------------------------------------------------------------------
    def _listed(self, rows: list[dict[str, Any]]) -> None:
        self.view.profiles = rows
        options = {r["name"]: r["id"] for r in rows}
        self._select.options = options
        ids = list(options.values())
        if ids:
            self._select.value = self._wanted if self._wanted in ids else ids[0]
            self._open(self._select.value)  # (a Select picks its first option itself: no event then)

    def _open(self, profile_id: str | None) -> None:
        if profile_id and profile_id != self.view.profile_id:
            self._bg.run("open", lambda: self.view.read_profile(profile_id), self.view.show_profile, self._failed)

    def _failed(self, exc: Exception) -> None:
        self.view.error = str(exc)

    def save(self) -> None:
        view = self.view
        if not view.prepare():
            return
        self._save.disabled = True

        def done(profile: Any) -> None:
            self._save.disabled = False
            view.stored(profile)

        def refused(exc: Exception) -> None:
            self._save.disabled = False
            view.refused(exc)

        self._bg.run("save", view.store, done, refused)

    # -- drawing ----------------------------------------------------------------------------
    def _draw_list(self) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(r['name'])}{' <i>(default)</i>' if r['default'] else ''}</td>"
            f"<td style='text-align:right'>{r['alarms']}</td></tr>"
            for r in self.view.profiles
        )
        self._list.object = (
            "<table class='profiles-table' style='border-collapse:collapse'><tr><th style='text-align:left'>Profile</th>"
            f"<th>Alarm rules</th></tr>{rows}</table>"
            if rows
            else "No device profiles yet."
        )

    def _draw_status(self) -> None:
        v = self.view
        if v.error:
            self._status.object = f'<div class="save-error" style="color:#d32f2f">{html.escape(v.error)}</div>'
        elif v.message:
            self._status.object = f'<div class="save-ok" style="color:#2e7d32">{html.escape(v.message)}</div>'
        else:
            self._status.object = ""

    def _draw(self) -> None:
        v = self.view
        cards: list[Any] = (
            [pn.pane.Markdown(f"### Alarm rules of **{html.escape(v.profile_name)}**")] if v.profile_id else []
        )
        if v.profile_id and not v.alarms:
            cards.append(pn.pane.Markdown("This profile has no alarm rules yet.", css_classes=["no-rules"]))
        cards += [self._alarm_card(a, i) for i, a in enumerate(v.alarms)]
        self._editor.objects = cards

    def _alarm_card(self, alarm: AlarmForm, index: int) -> pn.Card:
        rules = [self._rule(alarm, r) for r in alarm.create_rules]
        clear: Any
        if alarm.clear_rule is not None:
            clear = self._rule(alarm, alarm.clear_rule)
        else:
            clear = pn.pane.Markdown("No clear rule: the alarm stays until someone clears it.")

        def add_clear() -> None:
            alarm.clear_rule = RuleForm(severity=None)
            self._draw()

        def drop_clear() -> None:
            alarm.clear_rule = None
            self._draw()

        def add_severity() -> None:
            alarm.add_severity()
            self._draw()

        def remove() -> None:
            self.view.remove_alarm(alarm)

        head = pn.Row(
            _field(
                alarm,
                "alarm_type",
                _text(alarm, "alarm_type", "Alarm type", "alarm-type", 260, "e.g. High Temperature"),
            ),
            _button("Remove alarm rule", "remove-alarm", remove),
        )
        return pn.Card(
            head,
            _error_pane(alarm, "create_rules"),
            *rules,
            _button("+ Severity", "add-severity", add_severity),
            pn.pane.Markdown("**Clear rule**"),
            clear,
            _button("Remove clear rule", "remove-clear", drop_clear)
            if alarm.clear_rule
            else _button("+ Clear rule", "add-clear", add_clear),
            title=alarm.alarm_type or f"Alarm rule {index + 1}",
            css_classes=["alarm-card"],
            sizing_mode="stretch_width",
        )

    def _rule(self, alarm: AlarmForm, rule: RuleForm) -> pn.Column:
        parts: list[Any] = []
        if rule.severity is not None:
            sev = _select(rule, "severity", list(SEVERITIES), "Severity", "rule-severity", 150)

            def remove() -> None:
                alarm.create_rules = [r for r in alarm.create_rules if r is not rule]
                self._draw()

            colour = severity_colour(rule.severity)
            parts.append(
                pn.Row(
                    pn.pane.HTML(f'<div style="width:6px;height:48px;background:{colour}"></div>'),
                    _field(rule, "severity", sev),
                    _button("Remove severity", "remove-severity", remove),
                )
            )
        for c in rule.conditions:
            parts.append(self._condition(rule, c))

        def add_condition() -> None:
            rule.conditions = [*rule.conditions, ConditionForm()]
            self._draw()

        parts.append(pn.Row(_button("+ Condition", "add-condition", add_condition), _error_pane(rule, "conditions")))
        spec = _select(rule, "spec_type", list(ar.SPEC_TYPES), "Condition holds", "rule-spec", 140)
        count = pn.widgets.IntInput.from_param(rule.param.count, name="Count", css_classes=["rule-count"], width=90)
        unit = _select(rule, "unit", list(ar.TIME_UNITS), "Unit", "rule-unit", 130)
        schedule_options = ["ANY_TIME", "SPECIFIC_TIME"] + (["CUSTOM"] if rule.raw_schedule else [])
        schedule = _select(rule, "schedule_type", schedule_options, "Schedule", "rule-schedule", 150)
        tz = _text(rule, "timezone", "Time zone", "rule-timezone", 150, "Europe/Berlin")
        days = pn.widgets.MultiChoice(
            name="Days", options=list(WEEKDAYS), value=list(rule.days), css_classes=["rule-days"], width=260
        )
        days.param.watch(lambda e: setattr(rule, "days", list(e.new)), "value")
        starts = _text(rule, "starts", "From", "rule-starts", 80, "09:00")
        ends = _text(rule, "ends", "To", "rule-ends", 80, "17:00")
        timed = pn.Row(
            _field(rule, "timezone", tz),
            _field(rule, "days", days),
            _field(rule, "starts", starts),
            _field(rule, "ends", ends),
        )
        timed.visible = rule.schedule_type == "SPECIFIC_TIME"
        count_row = pn.Row(_field(rule, "count", count), unit)
        count_row.visible = rule.spec_type != "SIMPLE"
        unit.visible = rule.spec_type == "DURATION"

        def toggled(*_: Any) -> None:
            timed.visible = rule.schedule_type == "SPECIFIC_TIME"
            count_row.visible = rule.spec_type != "SIMPLE"
            unit.visible = rule.spec_type == "DURATION"

        rule.param.watch(toggled, ["schedule_type", "spec_type"])
        parts.append(pn.Row(spec, count_row, schedule))
        parts.append(timed)
        parts.append(_text(rule, "details", "Alarm details (${key} is replaced by its value)", "rule-details", 420))
        return pn.Column(
            *parts,
            css_classes=["clear-rule" if rule.severity is None else "create-rule"],
            styles={"border-left": "1px solid #ddd", "padding-left": "8px"},
        )

    def _condition(self, rule: RuleForm, c: ConditionForm) -> pn.Row:
        def remove() -> None:
            rule.conditions = [x for x in rule.conditions if x is not c]
            self._draw()

        if c.raw is not None:
            return pn.Row(
                pn.pane.Markdown(html.escape(c.summary)), _button("Remove condition", "remove-condition", remove)
            )
        op = pn.widgets.Select(
            name="Operation", options=list(ar.OPERATIONS[c.value_type]), css_classes=["cond-op"], width=170
        )
        op.value = c.operation if c.operation in op.options else op.options[0]
        c.operation = op.value
        op.param.watch(lambda e: setattr(c, "operation", e.new), "value")

        def kind_changed(e: Any) -> None:
            op.options = list(ar.OPERATIONS[e.new])
            if op.value not in op.options:
                op.value = op.options[0]

        c.param.watch(kind_changed, "value_type")
        return pn.Row(
            _select(c, "key_type", ["TIME_SERIES", "ATTRIBUTE", "ENTITY_FIELD"], "Key type", "cond-key-type", 140),
            _field(c, "key", _text(c, "key", "Key", "cond-key", 150, "temperature")),
            _select(c, "value_type", ["NUMERIC", "STRING", "BOOLEAN"], "Value type", "cond-value-type", 120),
            _field(c, "operation", op),
            _field(c, "threshold", _text(c, "threshold", "Threshold", "cond-threshold", 110, "30")),
            _text(c, "threshold_attribute", "or from attribute", "cond-attribute", 150, "e.g. tempLimit"),
            _select(c, "threshold_source", list(ar.SOURCE_TYPES), "of the", "cond-source", 170),
            pn.widgets.Checkbox.from_param(c.param.inherit, name="inherit", css_classes=["cond-inherit"], width=70),
            _button("Remove condition", "remove-condition", remove),
            css_classes=["condition"],
        )

    def _add_alarm(self) -> None:
        if self.view.profile_id:
            self.view.add_alarm()

    def __panel__(self) -> Any:
        return pn.Column(
            pn.pane.Markdown(
                "## Device profiles\nA profile's **alarm rules** raise, update and clear alarms on its devices "
                "(through the rule chain's Device Profile node)."
            ),
            self._list,
            self._select,
            self._editor,
            pn.Row(self._add, self._save),
            self._status,
            sizing_mode="stretch_width",
            css_classes=["profiles-page"],
        )


def profiles_page(platform: Any) -> Any:
    """``/profiles`` for tenant administrators (``?profile=<id>`` opens that one)."""
    template, user = tenant_admin_template(
        platform,
        "/profiles",
        "Device profiles and their alarm rules are for **tenant administrators only**. "
        "The alarms they raise on your devices are on the [Alarms](/alarms) page.",
        "profiles-refused",
    )
    if user is None:
        return template
    arg = (pn.state.session_args or {}).get("profile", [b""])[0]
    wanted = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
    template.main.append(ProfilesPage(platform.executor, wanted, view=ProfilesView(platform, user)))
    return template
