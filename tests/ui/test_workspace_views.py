"""The workspace views driven from Python (no server: background reads run inline), for what a
browser test would be slow to reach: every Advanced field's message, a failed build's wording,
the models page's switches and its delete confirmation."""

from __future__ import annotations

from tbpanel.anomaly.config import ModelConfig
from tbpanel.ui.workspace.models import ModelsPage
from tbpanel.ui.workspace.result import ResultView
from tbpanel.ui.workspace.wizard import AdvancedForm, WizardView
from tbpanel.views.workspace.wizard import ModelWizard
from tests.helpers.workspace import DAY, T0, built


def test_advanced_form_shows_problems_next_to_their_field():
    form = AdvancedForm(config=ModelConfig(name="x", device_type="pump"))
    w, msg = form._widgets, form._msgs
    assert "name" not in w and set(w) == set(ModelConfig.param) - {"name"}
    w["minor_threshold"].value = 300.0
    w["major_threshold"].value = 150.0
    assert "below the MINOR threshold" in msg["major_threshold"].object and not msg["minor_threshold"].object
    w["segment_ms"].value = -5  # refused by param's bounds: the old value stays, the message says why
    assert "Not accepted: Must be at least 0" in msg["segment_ms"].object and form.config.segment_ms == 0
    w["fields"].value = "vibration, vibration"
    assert "only once" in msg["fields"].object and form.config.fields == ["vibration", "vibration"]
    w["major_threshold"].value = 400.0
    w["segment_ms"].value = 3_600_000
    w["fields"].value = "vibration"
    assert form.problems() == {} and all(not m.object for m in msg.values())


def test_wizard_view_walks_builds_and_reports_a_failed_build(env):
    platform, tenant, devices = env
    wizard = ModelWizard(platform, tenant_id=tenant.id, intent="quick_scan")
    view = WizardView(platform, wizard=wizard)
    view._go()
    wizard.device_type = "pump"
    wizard.set_range("custom", T0, T0 + 7 * DAY)
    view._go()
    assert "data-verdict='Good'" in view._readiness.object and not view._next.disabled
    view._go()
    view._go()
    assert wizard.step == 4 and not view._build.disabled
    view._review_name.value = ""
    assert view._build.disabled and "Give the model a name" in view._review_name_msg.object
    view._review_name.value = "from python"
    # the store loses the data before the build runs: the build fails, the page says so
    platform.store.delete_entity(devices[0]), platform.store.delete_entity(devices[1])
    platform.store.delete_entity(devices[2])
    view._start_build()
    platform.tasks.wait(view._task.id, timeout=120)
    view._poll_task()
    assert "data-status='FAILED'" in view._build_status.object and "build it again" in view._build_status.object
    assert platform.anomaly.get_model(view._model.id).status == "FAILED"


def test_models_page_switches_and_delete_confirmation(env):
    platform, tenant, _ = env
    model = built(platform, tenant)
    user = platform.registry.create_user("a@t.test", "secret-pass", "TENANT_ADMIN", tenant.id)
    page = ModelsPage(platform, user)
    row = page._rows[model.id]
    assert "data-status='READY'" in row._head.object and row._build.visible is False
    row._toggles["saving"].value = True
    assert platform.anomaly.get_model(model.id).refresh.save_telemetry
    assert "save scores switched on" in page._message.object
    fresh = platform.anomaly.create_model(tenant.id, ModelConfig(name="new one", device_type="pump"))
    page.refresh()
    new_row = page._rows[fresh.id]
    assert new_row._toggles["monitoring"].disabled and new_row._build.visible
    row._delete.clicks += 1
    assert page._confirm.visible and "Delete **vib**?" in page._confirm_text.object
    page._confirm_no.clicks += 1
    assert not page._confirm.visible and platform.anomaly.get_model(model.id) is not None
    row._delete.clicks += 1
    page._confirm_yes.clicks += 1
    assert platform.anomaly.get_model(model.id) is None and model.id not in page._rows


def test_result_view_cards_hold_the_summary(env):
    platform, tenant, _ = env
    model = built(platform, tenant)
    view = ResultView(platform, model)
    df = platform.anomaly.anomalies_frame(model.id)
    assert (
        f'id="card-anomalies"><div class="label">Anomalies</div><div class="value" data-value="{len(df)}"'
        in view._cards.object
    )
    assert "of 3 devices" in view._cards.object and len(view._top.value) == min(len(df), 10)
    assert view._heat.object.name == "activity-heatmap" and view._heat.object.renderers


def test_result_view_of_a_model_not_built_yet(env):
    platform, tenant, _ = env
    model = platform.anomaly.create_model(tenant.id, ModelConfig(name="new", device_type="pump"))
    view = ResultView(platform, model)
    assert 'data-value="0"' in view._cards.object and "none found" in view._cards.object
    assert "Status <b>NEW</b>" in view._status.object and view._top.value.empty
    assert len(view._heat.object.renderers) == 1  # an empty heatmap, not a figure without renderers
