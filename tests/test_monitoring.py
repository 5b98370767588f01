"""Monitoring after deployment, in real Chromium against a real server on 127.0.0.1.

One A/B build of iris serves every page test (tests/specs/iris_ab.toml: float32 for 70% of
clients, uint8 for 30%, reports to api/monitor). The tests cover drift on in-distribution and
shifted inputs, feedback and its CSV export with a rebuild that trains on it, stable A/B
assignment and its split, both variants precached, and the collector round trip with rejected
reports.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from builder import stats
from builder.collector import REPORT_PATH, Collector
from conftest import ROOT, build_or_fail, run_webml

pytestmark = pytest.mark.slow

SPECS = ROOT / "tests" / "specs"
SCREENSHOTS = ROOT / "test-results" / "monitoring"
MESSAGES = json.loads((ROOT / "web" / "src" / "messages.json").read_text(encoding="utf-8"))
READY = "() => window.webml && window.webml.state !== 'loading'"
TOLERANCE = 1e-4
SPLIT = 0.3


@pytest.fixture(scope="session")
def ab_app(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("iris-ab") / "iris-ab"
    build_or_fail(SPECS / "iris_ab.toml", output)
    return output


@pytest.fixture(scope="module")
def iris_rows(ab_app) -> list[dict]:
    """Every iris flower, shuffled, keyed by the app's feature names: inputs from the training distribution."""
    from sklearn.datasets import load_iris

    names = [f["name"] for f in metadata_of(ab_app)["input"]["features"]]
    data = load_iris().data[np.random.default_rng(5).permutation(150)]
    return [dict(zip(names, map(float, row))) for row in data]


def shifted(rows: list[dict]) -> list[dict]:
    """The same flowers with petals 3 cm longer and 1.5 cm wider: beyond every training value."""
    return [{**row, "petal length (cm)": row["petal length (cm)"] + 3, "petal width (cm)": row["petal width (cm)"] + 1.5}
            for row in rows]


def metadata_of(app: Path) -> dict:
    return json.loads((app / "metadata.json").read_text(encoding="utf-8"))


def open_app(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(READY, timeout=90_000)
    assert page.evaluate("() => webml.state") == "ready", page.evaluate("() => webml.error")
    return page


def upload_rows(page, rows: list[dict]) -> None:
    """Predict ``rows`` through the page's batch CSV input and wait until the monitor counted them."""
    names = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    writer.writerows([row[name] for name in names] for row in rows)
    before = monitor_count(page)
    page.set_input_files("#batch-file", files=[{"name": "rows.csv", "mimeType": "text/csv",
                                                "buffer": buffer.getvalue().encode()}])
    page.wait_for_function("n => Number(document.querySelector('#monitor-summary').dataset.count) >= n",
                           arg=before + len(rows))


def monitor_count(page) -> int:
    return int(page.get_attribute("#monitor-summary", "data-count") or 0)


def predict_in_form(page, row: dict) -> None:
    before = page.evaluate("() => webml.predictionCount")
    page.evaluate("row => webml.show(row)", row)
    page.wait_for_function("n => webml.predictionCount > n", arg=before)


def start_as(context, client: str) -> None:
    """Give the browser this client id before the app first runs (a reload keeps a later change)."""
    context.add_init_script(f"if (!localStorage.getItem('webml.client')) localStorage.setItem('webml.client', '{client}')")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def fnv1a(text: str) -> int:
    """FNV-1a over UTF-16 code units, written independently of web/src/ab.js (ids are ASCII)."""
    value = 0x811C9DC5
    for char in text:
        value ^= ord(char)
        value = (value * 0x01000193) % 2**32
    return value


def expected_variant(app_name: str, client: str, split: float) -> str:
    return "b" if fnv1a(f"{app_name}:{client}") / 2**32 < split else "a"


def client_for(app_name: str, variant: str) -> str:
    """A client id (24 hex digits, like the page makes) that the split assigns to ``variant``."""
    for number in range(10_000):
        client = f"{number:024x}"
        if expected_variant(app_name, client, SPLIT) == variant:
            return client
    raise AssertionError(f"no client id for variant {variant}")


# ---------------------------------------------------------------------------------------------
# What the build ships


def test_build_ships_statistics_and_variants(ab_app):
    from builder.build import model_files_digest
    from builder.convert import describe_graph_model
    from builder.verify import load_site

    metadata = metadata_of(ab_app)
    monitor = metadata["monitor"]
    assert monitor["thresholds"] == {"psi": 0.2, "ks": 0.3, "prediction_shift": 0.2, "min_samples": 30}
    assert monitor["collect_url"] == "api/monitor"
    assert [f["name"] for f in monitor["features"]] == [f["name"] for f in metadata["input"]["features"]]
    for feature in monitor["features"]:
        assert feature["kind"] == "numeric"
        assert len(feature["expected"]) == len(feature["edges"]) + 1
        assert sum(feature["expected"]) == pytest.approx(1.0)
        assert feature["train_samples"] == 120
        assert feature["missing_rate"] == 0.0
    assert monitor["predictions"]["samples"] == 30

    ab = metadata["ab"]
    assert ab["split"] == SPLIT
    assert [(v["id"], v["name"], v["url"]) for v in ab["variants"]] == [
        ("a", "float32", "model/model.json"), ("b", "uint8", "model-b/model.json")]
    assert metadata["model"]["sha256"] == ab["variants"][0]["sha256"]
    for variant in ab["variants"]:
        folder = ab_app / Path(variant["url"]).parent
        assert variant["sha256"] == model_files_digest(folder, describe_graph_model(folder).files)
        assert len(variant["golden"]) == len(metadata["golden"])
    assert ab["variants"][0]["sha256"] != ab["variants"][1]["sha256"]

    precached = {entry["url"] for entry in load_site(ab_app).precache["files"]}
    for variant in ab["variants"]:
        assert variant["url"] in precached

    report = json.loads((ab_app / "report.json").read_text())
    checks = {c["name"]: c["status"] for c in report["verification"]["checks"]}
    for backend in ("wasm", "cpu"):
        assert checks[f"parity on {backend}, variant a (float32)"] == "passed"
        assert checks[f"parity on {backend}, variant b (uint8)"] == "passed"
    assert checks["works offline (server stopped)"] == "passed"
    assert report["optimization"]["ab"]["variants"][1] == {
        "id": "b", "name": "uint8", "share": SPLIT, "within_budget": True, "directory": "model-b"}


def test_webml_test_checks_each_variant(ab_app, tmp_path):
    import shutil

    from builder.render import write_service_worker
    from builder.verify import load_site

    copy = tmp_path / "iris-ab"
    shutil.copytree(ab_app, copy)
    wasm_files = {f["variant"]: f["url"] for f in load_site(ab_app).precache["files"] if "variant" in f}
    metadata = metadata_of(copy)
    golden = metadata["ab"]["variants"][1]["golden"]
    golden[0] = list(reversed(golden[0]))
    (copy / "metadata.json").write_text(json.dumps(metadata))
    write_service_worker(copy, metadata["name"], wasm_files)
    result = run_webml("test", str(copy), "--no-offline", "--backend", "cpu", "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1
    assert "PASSED   parity on cpu, variant a (float32)" in result.stdout
    assert "FAILED   parity on cpu, variant b (uint8)" in result.stdout


# ---------------------------------------------------------------------------------------------
# Drift


def test_in_distribution_inputs_raise_no_warning(ab_app, iris_rows, browser, served):
    metadata = metadata_of(ab_app)
    monitor = metadata["monitor"]
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(ab_app).url)
        assert page.is_visible("#monitor-section")
        assert page.text_content("#monitor-state") == "Drift is computed after 30 predictions."
        upload_rows(page, iris_rows)
        assert page.text_content("#monitor-summary") == "150 predictions observed on this device"
        assert page.is_hidden("#monitor-drift-warning")
        assert page.is_hidden("#monitor-shift-warning")
        assert page.text_content("#monitor-state") == MESSAGES["en"]["monitor.ok"]
        rows = page.eval_on_selector_all("#monitor-table tbody tr", "rows => rows.map((r) => ({...r.dataset}))")
        assert [r["feature"] for r in rows] == [f["name"] for f in monitor["features"]]
        assert all(r["drifted"] == "false" for r in rows)

        # The page bins like Python and measures drift like `webml monitor`.
        counted = page.evaluate("() => webml.monitoring.stats()")
        drift = {f["name"]: f for f in page.evaluate("() => webml.monitoring.drift().features")}
        for feature in monitor["features"]:
            values = np.array([row[feature["name"]] for row in iris_rows])
            bins = stats.bin_numeric(values, feature["edges"]).tolist()
            assert counted["features"][feature["name"]] == {"bins": bins, "missing": 0}
            expected = stats.feature_drift(feature, bins, 0, monitor["thresholds"], len(monitor["features"]))
            actual = drift[feature["name"]]
            for key, page_key in (("psi", "psi"), ("ks", "ks"), ("psi_limit", "psiLimit"), ("ks_limit", "ksLimit")):
                assert actual[page_key] == pytest.approx(expected[key], abs=1e-9), (feature["name"], key)
            assert actual["drifted"] is expected["drifted"] is False
        screenshot(page, "in-distribution")
    finally:
        context.close()


def test_shifted_inputs_warn_naming_features(ab_app, iris_rows, browser, served):
    context = browser.new_context(locale="en-US")
    try:
        url = served(ab_app).url
        page = open_app(context, url)
        upload_rows(page, shifted(iris_rows))
        warning = page.text_content("#monitor-drift-warning")
        assert warning == "Input drift detected in: petal length (cm), petal width (cm)"
        assert json.loads(page.get_attribute("#monitor-drift-warning", "data-features")) == [
            "petal length (cm)", "petal width (cm)"]
        drifted = page.eval_on_selector_all("#monitor-table tr.drifted", "rows => rows.map((r) => r.dataset.feature)")
        assert drifted == ["petal length (cm)", "petal width (cm)"]
        # Longer petals make the model call more flowers virginica.
        assert page.is_visible("#monitor-shift-warning")
        assert page.text_content("#monitor-shift-warning").startswith("The distribution of predictions has shifted")
        screenshot(page, "shifted")

        # The counts live in IndexedDB: a reload shows the same warning, in the chosen language.
        page.reload()
        page.wait_for_function(READY)
        assert monitor_count(page) == 150
        page.select_option("#language-select", "zh-TW")
        assert page.text_content("#monitor-drift-warning") == "偵測到輸入漂移：petal length (cm), petal width (cm)"
        texts = page.evaluate("""() => [...document.querySelectorAll('#monitor-section [data-i18n], #feedback [data-i18n]')]
            .filter((element) => !element.dataset.i18nParams).map((element) => [element.dataset.i18n, element.textContent])""")
        assert len(texts) > 10
        for key, text in texts:
            assert text == MESSAGES["zh-TW"][key], key
        assert page.text_content("#monitor-model").startswith("版本 a（float32）") or \
            page.text_content("#monitor-model").startswith("版本 b（uint8）")
        page.select_option("#language-select", "en")

        page.click("#monitor-reset")
        page.wait_for_function("() => document.querySelector('#monitor-summary').dataset.count === '0'")
        assert page.is_hidden("#monitor-drift-warning")
        assert page.text_content("#monitor-state") == "Drift is computed after 30 predictions."

        # Below min_samples no limit applies: the critical KS value there exceeds 1.
        predict_in_form(page, shifted(iris_rows)[0])
        page.wait_for_function("() => document.querySelector('#monitor-summary').dataset.count === '1'")
        assert page.text_content("#monitor-summary") == "1 prediction observed on this device"
        rows = page.eval_on_selector_all("#monitor-table tbody tr", """rows => rows.map((r) => ({
            ksLimit: Number(r.dataset.ksLimit), drifted: r.dataset.drifted,
            cells: [...r.querySelectorAll('td')].map((td) => td.textContent)}))""")
        assert rows
        assert any(row["ksLimit"] > 1 for row in rows)
        for row in rows:
            samples, missing, psi, psi_limit, ks, ks_limit, status = row["cells"]
            assert samples == "1"
            assert psi_limit == "–"
            assert ks_limit == "–"
            assert row["drifted"] == "false"
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Feedback


def test_feedback_export_and_rebuild(ab_app, iris_rows, browser, served, tmp_path):
    metadata = metadata_of(ab_app)
    labels = metadata["output"]["labels"]
    context = browser.new_context(locale="en-US", accept_downloads=True)
    try:
        page = open_app(context, served(ab_app).url)
        assert page.is_hidden("#feedback")

        # Without the opt-in a correction keeps no input, so there is nothing to export.
        predict_in_form(page, iris_rows[0])
        assert not page.is_checked("#feedback-keep")
        page.click("#feedback-wrong")
        assert page.get_attribute("#feedback-wrong", "aria-expanded") == "true"
        assert page.evaluate("() => document.activeElement.id") == "feedback-label"
        predicted = page.get_attribute("#predicted-label", "data-label")
        options = page.eval_on_selector_all("#feedback-label option", "options => options.map((o) => o.value)")
        assert options == ["", *[label for label in labels if label != predicted]]
        page.click("#feedback-save")
        assert page.text_content("#feedback-error") == "Enter the correct answer first."
        page.select_option("#feedback-label", options[1])
        page.click("#feedback-save")
        page.wait_for_selector("#feedback-status:has-text('Saved.')")
        assert page.text_content("#feedback-status") == "Saved. 1 correction stored on this device."
        assert page.text_content("#feedback-count").startswith("1 correction stored on this device")
        assert page.get_attribute("#feedback-count", "data-exportable") == "0"
        assert page.is_hidden("#feedback-export")

        # With the opt-in, corrections keep their inputs; one made with the keyboard only.
        page.check("#feedback-keep")
        corrections = []
        for row in iris_rows[1:4]:
            predict_in_form(page, row)
            predicted = page.get_attribute("#predicted-label", "data-label")
            correct = next(label for label in labels if label != predicted)
            page.click("#feedback-wrong")
            page.select_option("#feedback-label", correct)
            page.click("#feedback-save")
            page.wait_for_function("() => document.activeElement.id === 'feedback-status'")
            corrections.append((row, correct))
        predict_in_form(page, iris_rows[4])
        page.focus("#feedback-wrong")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.activeElement.id === 'feedback-label'")
        page.keyboard.press("ArrowDown")
        correct = page.input_value("#feedback-label")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "feedback-save"
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.activeElement.id === 'feedback-status'")
        corrections.append((iris_rows[4], correct))

        predict_in_form(page, iris_rows[5])
        page.click("#feedback-right")
        assert page.is_disabled("#feedback-wrong")
        page.wait_for_function("text => document.querySelector('#feedback-status').textContent === text",
                               arg=MESSAGES["en"]["feedback.thanks"])
        assert page.text_content("#feedback-count") == (
            "5 corrections stored on this device, 4 of them with inputs (only those can be exported).")
        model_line = page.text_content("#monitor-model")
        assert "Feedback: 1 of 6 predictions right (16.7%)" in model_line

        with page.expect_download() as download_info:
            page.click("#feedback-export")
        download = download_info.value
        assert download.suggested_filename == "iris-monitor-corrections.csv"
        exported = tmp_path / "corrections.csv"
        download.save_as(exported)
        screenshot(page, "feedback")
    finally:
        context.close()

    table = list(csv.reader(io.StringIO(exported.read_text())))
    names = [f["name"] for f in metadata["input"]["features"]]
    assert table[0] == [*names, "target"]
    assert len(table) == 1 + len(corrections)
    for line, (row, correct) in zip(table[1:], corrections):
        assert [float(v) for v in line[:-1]] == [row[name] for name in names]
        assert line[-1] == correct

    # The next model trains on the corrections: data.extra appends them before the test split.
    report = build_or_fail(SPECS / "iris.toml", tmp_path / "retrained",
                           "--set", f'data.extra=["{exported}"]', "--set", "scale_up.enabled=false",
                           "--set", "tuning.enabled=false", "--set", 'optimize.variants=["float32"]',
                           "--set", "model.epochs=5", "--set", 'app.backends=["wasm"]',
                           "--set", 'verify.backends=["wasm"]', "--set", "verify.offline=false")
    assert report["dataset"]["rows"] == 150 + len(corrections)
    assert report["dataset"]["extra_rows"] == [{"file": str(exported), "rows": len(corrections)}]


# ---------------------------------------------------------------------------------------------
# A/B variants


def test_ab_assignment_stable_and_near_split(ab_app, browser, served):
    metadata = metadata_of(ab_app)
    variants = {v["id"]: v for v in metadata["ab"]["variants"]}
    url = served(ab_app).url
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, url)
        first = page.evaluate("() => ({variant: webml.variant, client: webml.ab.client})")
        assert first["variant"]["how"] == "assigned"
        assert first["variant"]["id"] == expected_variant(metadata["name"], first["client"], SPLIT)
        assert page.get_attribute("#model-version", "data-hash") == variants[first["variant"]["id"]]["sha256"]
        for _ in range(2):
            page.reload()
            page.wait_for_function(READY)
            again = page.evaluate("() => ({variant: webml.variant, client: webml.ab.client})")
            assert again == first

        # Many simulated clients: ids from the page's own generator, assigned by the page.
        assigned = page.evaluate("""(count) => Array.from({length: count}, () => {
            const id = webml.ab.newClientId();
            return [id, webml.ab.assign(id)];
        })""", 20_000)
        share = sum(variant == "b" for _, variant in assigned) / len(assigned)
        # The standard deviation of the share is sqrt(0.3 * 0.7 / 20000) = 0.0032.
        assert abs(share - SPLIT) < 0.015, share
        assert all(expected_variant(metadata["name"], client, SPLIT) == variant for client, variant in assigned)
        assert len({client for client, _ in assigned}) == len(assigned)
    finally:
        context.close()

    # Clients whose ids fall on each side of the split run that variant, and it predicts like Python.
    inputs = [g["input"] for g in metadata["golden"]]
    for variant_id in ("a", "b"):
        context = browser.new_context(locale="en-US")
        start_as(context, client_for(metadata['name'], variant_id))
        try:
            page = open_app(context, url)
            assert page.evaluate("() => webml.variant.id") == variant_id
            assert page.evaluate("() => webml.modelVerified") is True
            outputs = page.evaluate("inputs => webml.predict(inputs)", inputs)
            assert np.abs(np.asarray(outputs) - np.asarray(variants[variant_id]["golden"])).max() <= TOLERANCE
            assert page.text_content("#monitor-model").startswith(f"Variant {variant_id} ({variants[variant_id]['name']})")
        finally:
            context.close()

    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, url + "?variant=uint8")
        assert page.evaluate("() => [webml.variant.id, webml.variant.how]") == ["b", "forced"]
    finally:
        context.close()


def test_both_variants_precached_and_offline(ab_app, browser, served):
    metadata = metadata_of(ab_app)
    server = served(ab_app)
    context = browser.new_context(locale="en-US")
    start_as(context, client_for(metadata['name'], 'a'))
    try:
        page = open_app(context, server.url)
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        cached = page.evaluate("""async () => {
            const cache = await caches.open((await caches.keys())[0]);
            return (await cache.keys()).map((request) => new URL(request.url).pathname);
        }""")
        for variant in metadata["ab"]["variants"]:
            assert f"/{variant['url']}" in cached
        # The page runs variant a; variant b's files come from the cache with the server stopped.
        server.stop()
        page.evaluate(f"() => localStorage.setItem('webml.client', '{client_for(metadata['name'], 'b')}')")
        page.reload()
        page.wait_for_function(READY)
        assert page.evaluate("() => [webml.state, webml.variant.id]") == ["ready", "b"]
        outputs = page.evaluate("inputs => webml.predict(inputs)", [g["input"] for g in metadata["golden"]])
        assert np.abs(np.asarray(outputs) - np.asarray(metadata["ab"]["variants"][1]["golden"])).max() <= TOLERANCE
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Collection


def stored_reports(database: Path) -> list[dict]:
    with sqlite3.connect(database) as connection:
        return [json.loads(body) for (body,) in connection.execute("SELECT body FROM reports ORDER BY received")]


def test_collector_round_trip_from_page(ab_app, iris_rows, browser, served, tmp_path):
    metadata = metadata_of(ab_app)
    database = tmp_path / "monitor.db"
    collector = Collector(database)
    collector.register_app(metadata)
    handlers = collector.handlers()
    server = served(ab_app, post_handlers=handlers, max_body_bytes=64 * 1024)
    context = browser.new_context(locale="en-US")
    start_as(context, client_for(metadata['name'], 'b'))
    try:
        page = open_app(context, server.url)
        assert page.text_content("#monitor-privacy") == (
            f"Counts (never your inputs) are sent to {server.url}api/monitor to monitor the model.")
        upload_rows(page, shifted(iris_rows[:60]))
        page.click("#monitor-send")
        page.wait_for_selector("#monitor-send-status[data-code='report-sent']")
        reports = stored_reports(database)
        assert len(reports) == 1
        report = reports[0]
        variant = metadata["ab"]["variants"][1]
        assert (report["app"], report["model"], report["variant"]) == (metadata["name"], variant["sha256"], "uint8")
        assert report["client"] == client_for(metadata["name"], "b")
        assert report["count"] == 60
        assert set(report) == {"schema", "id", "app", "model", "variant", "client", "count", "features", "predictions",
                               "latency_ms", "feedback"}
        assert report["features"] == page.evaluate("() => webml.monitoring.stats().features")
        assert sum(report["predictions"]["counts"]) == 60

        # Nothing new, nothing sent; a verdict and five more predictions make the next report.
        assert page.evaluate("() => webml.sendReports()")["sent"] == 0
        for row in iris_rows[60:65]:
            predict_in_form(page, row)
        page.click("#feedback-right")
        result = page.evaluate("() => webml.sendReports()")
        assert result == {"sent": 1, "rejected": [], "failed": None, "waiting": 0}
        reports = stored_reports(database)
        assert [r["count"] for r in reports] == [60, 5]
        assert reports[1]["feedback"] == {"total": 1, "wrong": 0}

        # Bad reports sent from the page are rejected and stored nowhere.
        answers = page.evaluate("""async ([url, good]) => {
            const post = async (body) => {
                const response = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'}, body});
                return [response.status, await response.text()];
            };
            return [
                await post(JSON.stringify({...good, id: 'raw-inputs-1', inputs: [[5.1, 3.5, 1.4, 0.2]]})),
                await post('{"schema": 1,'),
                await post(JSON.stringify({...good, id: 'big-report-1', client: 'x'.repeat(70000)})),
                await post(JSON.stringify({...good, id: 'bad-bins-1', features: {'sepal length (cm)': {bins: [1, 2], missing: 0}}})),
            ];
        }""", [server.url + "api/monitor", report])
        statuses = [status for status, _ in answers]
        assert statuses == [400, 400, 413, 400]
        assert "unknown key 'inputs'" in answers[0][1]
        assert "invalid JSON" in answers[1][1]
        assert "has 2 bins" in answers[3][1]
        assert len(stored_reports(database)) == 2

        # The app's own report rejected: the collector now expects other bins for this model, so
        # the page drops the report instead of sending it forever, and shows the reason.
        tampered = json.loads(json.dumps(metadata))
        for entry in tampered["ab"]["variants"]:
            entry["sha256"] = "0" * 64
        tampered["model"]["sha256"] = variant["sha256"]
        tampered["monitor"]["features"][0]["expected"] = [0.5, 0.5]
        collector.register_app(tampered)
        predict_in_form(page, iris_rows[65])
        result = page.evaluate("() => webml.sendReports()")
        assert result["sent"] == 0
        assert result["waiting"] == 0
        assert result["rejected"][0]["status"] == 400
        assert page.get_attribute("#monitor-send-status", "data-code") == "report-rejected"
        bins = len(metadata["monitor"]["features"][0]["expected"])
        assert page.text_content("#monitor-send-status") == (
            f"The collector rejected a report (HTTP 400): report.features['sepal length (cm)'].bins has {bins} bins; "
            f"model {variant['sha256'][:12]} has 2")
        assert len(stored_reports(database)) == 2
        collector.register_app(metadata)

        # With the collector unreachable the report waits in the outbox and goes out, once, later.
        port = server.port
        server.stop()
        predict_in_form(page, iris_rows[66])
        result = page.evaluate("() => webml.sendReports()")
        assert result["sent"] == 0
        assert result["waiting"] == 1
        assert result["failed"]["status"] == 0
        assert page.get_attribute("#monitor-send-status", "data-code") == "report-failed"
        from builder.serve import AppServer

        restarted = AppServer(ab_app, port=port, post_handlers=handlers, max_body_bytes=64 * 1024).start()
        try:
            result = page.evaluate("() => webml.sendReports()")
        finally:
            restarted.stop()
        assert result == {"sent": 1, "rejected": [], "failed": None, "waiting": 0}
        assert [r["count"] for r in stored_reports(database)] == [60, 5, 1]
    finally:
        context.close()
        collector.close()

    summary = run_webml("monitor", str(database), "--json", str(tmp_path / "summary.json"))
    assert summary.returncode == 0, summary.stderr
    assert f"{metadata['name']} variant uint8 (model {variant['sha256'][:12]}): 66 predictions from 1 client(s)" \
        in summary.stdout
    lines = {line.split()[0] + " " + line.split()[1]: line for line in summary.stdout.splitlines()
             if line.startswith("  petal") or line.startswith("  sepal")}
    assert lines["petal length"].endswith("DRIFT")
    assert not lines["sepal length"].endswith("DRIFT")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data[0]["feedback_total"] == 1
    assert {f["name"] for f in data[0]["features"] if f["drifted"]} == {"petal length (cm)", "petal width (cm)"}
