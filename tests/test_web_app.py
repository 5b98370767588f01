"""The generated web app in real Chromium, served by AppServer on 127.0.0.1.

Covers each input kind (tabular form, categorical select, batch CSV, drawing, file picker, drag
and drop, camera), each output kind (classes, binary, regression, multi-label), the backend
choice and ?backend=, the service worker update flow, installability, the file:// notice, the
zh-TW interface, accessibility, the CSP, and the size of the runtime shipped. The apps are built
once per session from the small specs in tests/specs/; screenshots go to test-results/web-app/.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, build_or_fail, run_webml

pytestmark = pytest.mark.slow

SPECS = ROOT / "tests" / "specs"
SCREENSHOTS = ROOT / "test-results" / "web-app"
MESSAGES = json.loads((ROOT / "web" / "src" / "messages.json").read_text(encoding="utf-8"))
READY = "() => window.webml && window.webml.state !== 'loading'"
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------
# Apps built once per session


def write_plants_csv(path: Path, rows: int = 240, seed: int = 3) -> None:
    """Write a small generated dataset: two numeric inputs with units, a categorical input,
    gaps in both, a regression target and three 0/1 label columns."""
    rng = np.random.default_rng(seed)
    soils = ["clay", "loam", "sand"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["height", "sun", "soil", "yield", "needs_water", "needs_shade", "flowering"])
        for i in range(rows):
            height = rng.uniform(10, 120)
            sun = rng.uniform(2, 12)
            soil = soils[rng.integers(3)]
            crop = 0.04 * height + 0.5 * sun + {"clay": 1.0, "loam": 2.0, "sand": 0.0}[soil] + rng.normal(0, 0.3)
            cells = [f"{height:.1f}", f"{sun:.1f}", soil, f"{crop:.2f}", int(soil == "sand" or sun > 9),
                     int(sun > 8 and height < 60), int(height > 50)]
            if i % 17 == 0:
                cells[0] = ""
            if i % 23 == 0:
                cells[2] = ""
            writer.writerow(cells)


@pytest.fixture(scope="session")
def plants_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plants") / "plants.csv"
    write_plants_csv(path)
    return path


def _build(tmp_path_factory, spec: str, *extra: str) -> Path:
    output = tmp_path_factory.mktemp(spec) / spec
    build_or_fail(SPECS / f"{spec}.toml", output, *extra)
    return output


@pytest.fixture(scope="session")
def iris_app(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "iris")


@pytest.fixture(scope="session")
def binary_app(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "breast_cancer")


@pytest.fixture(scope="session")
def yield_app(tmp_path_factory, plants_csv) -> Path:
    return _build(tmp_path_factory, "plants_yield", "--set", f'data.source="{plants_csv}"')


@pytest.fixture(scope="session")
def labels_app(tmp_path_factory, plants_csv) -> Path:
    return _build(tmp_path_factory, "plants_labels", "--set", f'data.source="{plants_csv}"')


# ---------------------------------------------------------------------------------------------
# Helpers


def metadata_of(app: Path) -> dict:
    return json.loads((app / "metadata.json").read_text(encoding="utf-8"))


def precache_of(app: Path) -> dict:
    from builder.verify import load_site

    return load_site(app).precache


def open_app(context, url: str):
    """Open the app in a new page and wait until it is ready; returns the page."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(READY, timeout=90_000)
    state = page.evaluate("() => ({state: webml.state, error: webml.error, code: webml.errorCode})")
    assert state["state"] == "ready", state
    return page


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def bar_probabilities(page) -> dict[str, float]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.bar')]
        .map((bar) => [bar.dataset.label, Number(bar.dataset.probability)]))""")


def golden_probabilities(metadata: dict, output: list[float]) -> dict[str, float]:
    labels = metadata["output"]["labels"]
    if metadata["output"]["task"] == "binary":
        return {labels[0]: 1 - output[0], labels[1]: output[0]}
    return dict(zip(labels, output))


def assert_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert set(actual) == set(expected)
    for label, value in expected.items():
        assert abs(actual[label] - value) <= TOLERANCE, (label, actual[label], value)


def golden_row(metadata: dict, predicate) -> dict:
    return next(g for g in metadata["golden"] if predicate(g["input"]))


def numeric_names(metadata: dict) -> list[str]:
    return [f["name"] for f in metadata["input"]["features"] if f["kind"] == "numeric"]


def wait_for_prediction(page, action) -> None:
    """Run ``action`` and wait until the page has shown one more prediction."""
    before = page.evaluate("() => webml.predictionCount")
    action()
    page.wait_for_function("count => webml.predictionCount > count", arg=before)


def precache_variants(app: Path) -> dict[str, str]:
    """Return {variant: url} of the WASM binaries in a build's precache manifest."""
    return {f["variant"]: f["url"] for f in precache_of(app)["files"] if "variant" in f}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Runtime size


def test_runtime_smaller_than_full_bundle(iris_app, digits_app):
    full = ROOT / "web" / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
    for app in (iris_app, digits_app):
        runtime = json.loads((app / "report.json").read_text())["runtime"]
        sizes = runtime["sizes"]
        shipped = [p for p in app.rglob("*.js") if p.name != "sw.js"]
        assert sizes["js"]["raw"] == sum(p.stat().st_size for p in shipped)
        assert sizes["full_bundle"]["raw"] == full.stat().st_size
        assert sizes["js"]["raw"] < sizes["full_bundle"]["raw"]
        assert sizes["js"]["gzip"] < sizes["full_bundle"]["gzip"]
        # Only the model's kernels are registered: no convolution for these dense models.
        assert "_FusedMatMul" in runtime["kernels"]
        assert "Conv2D" not in runtime["kernels"]
        assert runtime["missing_kernels"] == {}
        assert set(sizes["backends"]) == set(metadata_of(app)["app"]["backends"])


def test_missing_kernel_fails_loudly(iris_app, tmp_path):
    from builder.render import write_service_worker

    copy = tmp_path / "iris"
    shutil.copytree(iris_app, copy)
    sizes = json.loads((copy / "report.json").read_text())["runtime"]["sizes"]
    entry = next(f for f in sizes["backends"]["cpu"]["files"] if Path(f).name.startswith("cpu-"))
    chunk = copy / entry
    # Registering the cpu backend now looks for a kernel that does not exist.
    chunk.write_text(chunk.read_text().replace('"Softmax"', '"Softmaz"'))
    write_service_worker(copy, "iris", precache_variants(iris_app))
    result = run_webml("test", str(copy), "--no-offline", "--backend", "cpu", "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1, result.stdout
    assert "FAILED   page loads" in result.stdout
    assert "FAILED   parity on cpu" in result.stdout
    assert "kernel-missing" in result.stdout


# ---------------------------------------------------------------------------------------------
# Tabular inputs and outputs


def test_form_built_from_feature_schema(iris_app, browser, served):
    metadata = metadata_of(iris_app)
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(iris_app).url)
        features = metadata["input"]["features"]
        for index, feature in enumerate(features):
            label = page.text_content(f"label[for=feature-{index}]")
            # scikit-learn's names already end with their unit: "sepal length (cm)".
            assert label == feature["name"]
            hint = page.text_content(f"#feature-{index}-hint")
            assert hint.startswith(f"Training range {feature['min']:g} to {feature['max']:g}")
            assert page.get_attribute(f"#feature-{index}", "aria-describedby") == f"feature-{index}-hint feature-{index}-error"

        examples = metadata["examples"]
        assert page.locator("#example-select option").count() == len(examples) + 1
        wait_for_prediction(page, lambda: page.select_option("#example-select", "1"))
        for index, feature in enumerate(features):
            assert float(page.input_value(f"#feature-{index}")) == examples[1][feature["name"]]
        expected = page.evaluate("row => webml.predict([row])", examples[1])[0]
        assert_close(bar_probabilities(page), golden_probabilities(metadata, expected))
        assert page.text_content("#monitor-summary") == "1 prediction observed on this device"
        predicted = page.get_attribute("#predicted-label", "data-label")
        assert predicted == metadata["output"]["labels"][int(np.argmax(expected))]
        assert page.text_content("#predicted-label") == f"Predicted: {predicted}"
        screenshot(page, "tabular-multiclass")

        # Blank fields mean "missing": the result is the golden row with every numeric value missing.
        page.click("#reset-button")
        wait_for_prediction(page, lambda: page.click("#predict-button"))
        missing = golden_row(metadata, lambda row: all(row[name] is None for name in numeric_names(metadata)))
        assert_close(bar_probabilities(page), golden_probabilities(metadata, missing["output"]))

        count = page.evaluate("() => webml.predictionCount")
        page.fill("#feature-0", "abc")
        page.click("#predict-button")
        assert page.evaluate("() => webml.predictionCount") == count
        assert page.text_content("#feature-0-error") == "“abc” is not a number"
        assert page.get_attribute("#feature-0", "aria-invalid") == "true"
        assert page.evaluate("() => document.activeElement.id") == "feature-0"
        # The earlier result no longer matches the form, so it goes with its feedback buttons.
        assert page.locator("#predicted-label").count() == 0
        assert page.text_content("#prediction") == "No prediction yet"
        assert page.is_hidden("#feedback")

        # Clearing the form removes the result too.
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        assert page.is_visible("#feedback")
        page.click("#reset-button")
        assert page.locator("#predicted-label").count() == 0
        assert page.is_hidden("#feedback")
    finally:
        context.close()


def test_categorical_select_and_unseen_value(labels_app, browser, served):
    metadata = metadata_of(labels_app)
    soil = next(f for f in metadata["input"]["features"] if f["kind"] == "categorical")
    index = metadata["input"]["features"].index(soil)
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(labels_app).url)
        values = page.eval_on_selector_all(f"#feature-{index} option", "options => options.map((o) => o.value)")
        assert values == ["", *soil["vocabulary"], "__other__"]
        assert page.is_hidden(f"#feature-{index}-other")

        # Every numeric field blank and a soil never seen in training: the golden "unseen" row.
        page.select_option(f"#feature-{index}", "__other__")
        assert page.is_visible(f"#feature-{index}-other")
        page.fill(f"#feature-{index}-other", "peat")
        wait_for_prediction(page, lambda: page.click("#predict-button"))
        from builder.site import UNSEEN_VALUE

        unseen = golden_row(metadata, lambda row: row[soil["name"]] == UNSEEN_VALUE)
        assert all(unseen["input"][name] is None for name in numeric_names(metadata))
        assert_close(bar_probabilities(page), golden_probabilities(metadata, unseen["output"]))

        # Multi-label output: a bar and a threshold line per label, labels at or above it predicted.
        threshold = metadata["output"]["threshold"]
        assert float(page.get_attribute("#threshold-note", "data-threshold")) == threshold
        assert page.locator(".bar").count() == len(metadata["output"]["labels"])
        assert page.locator(".bar-threshold").count() == len(metadata["output"]["labels"])
        expected = [label for label, p in zip(metadata["output"]["labels"], unseen["output"]) if p >= threshold]
        assert page.get_attribute("#predicted-label", "data-label") == ",".join(expected)
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        screenshot(page, "tabular-multilabel-zh-TW")
    finally:
        context.close()


def test_regression_shows_value_with_unit(yield_app, browser, served):
    metadata = metadata_of(yield_app)
    assert metadata["output"]["unit"] == "kg"
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(yield_app).url)
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        expected = page.evaluate("row => webml.predict([row])", metadata["examples"][0])[0][0]
        headline = page.locator("#predicted-label")
        assert abs(float(headline.get_attribute("data-value")) - expected) <= TOLERANCE
        assert headline.get_attribute("data-unit") == "kg"
        assert re.fullmatch(r"Predicted value: -?[\d,.]+ kg", headline.text_content())
        assert page.locator(".bar").count() == 0
        screenshot(page, "tabular-regression")
    finally:
        context.close()


def test_binary_states_threshold(binary_app, browser, served):
    metadata = metadata_of(binary_app)
    threshold = metadata["output"]["threshold"]
    assert threshold == 0.4
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(binary_app).url)
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        value = page.evaluate("row => webml.predict([row])", metadata["examples"][0])[0][0]
        labels = metadata["output"]["labels"]
        assert page.get_attribute("#predicted-label", "data-label") == labels[1 if value >= threshold else 0]
        assert_close(bar_probabilities(page), {labels[0]: 1 - value, labels[1]: value})
        assert "40%" in page.text_content("#threshold-note")
        screenshot(page, "tabular-binary")
    finally:
        context.close()


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return buffer.getvalue()


def test_batch_csv_predictions_download(iris_app, browser, served):
    metadata = metadata_of(iris_app)
    names = [f["name"] for f in metadata["input"]["features"]]
    golden = metadata["golden"]
    rows = [[f"row{i}", *[g["input"][name] for name in names]] for i, g in enumerate(golden)]
    rows.append(["bad", "abc", *[1.0] * (len(names) - 1)])
    rows.append(["short", 1.0, 2.0])
    text = _csv_text(["id", *names], rows)
    context = browser.new_context(locale="en-US", accept_downloads=True)
    try:
        page = open_app(context, served(iris_app).url)
        assert page.is_visible("#batch-section")
        page.set_input_files("#batch-file", files=[{"name": "rows.csv", "mimeType": "text/csv",
                                                    "buffer": text.encode()}])
        page.wait_for_selector("#batch-download", state="visible")
        assert page.get_attribute("#batch-status", "data-code") == "rows-invalid"
        assert page.text_content("#batch-status").startswith(
            f"Predicted {len(golden)} rows. 2 rows could not be read (first: line {len(golden) + 2}: ")
        with page.expect_download() as download_info:
            page.click("#batch-download")
        download = download_info.value
        assert download.suggested_filename == "iris-predictions.csv"
        table = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
        labels = metadata["output"]["labels"]
        assert table[0] == ["id", *names, "predicted", *[f"probability {label}" for label in labels], "error"]
        for row, g in zip(table[1:], golden):
            probabilities = [float(v) for v in row[len(names) + 2:len(names) + 2 + len(labels)]]
            assert max(abs(a - b) for a, b in zip(probabilities, g["output"])) <= TOLERANCE
            assert row[len(names) + 1] == labels[int(np.argmax(g["output"]))]
            assert row[-1] == ""
        bad = table[-2]
        assert bad[0] == "bad"
        assert bad[-1] == f"column “{names[0]}”: “abc” is not a number"
        short = table[-1]
        assert short[:3] == ["short", "1.0", "2.0"]
        assert short[len(names) + 1:-1] == [""] * (1 + len(labels))
        assert short[-1] == f"the row has 3 cells, the header has {len(names) + 1}"
        assert page.locator("#batch-preview tbody tr").count() == min(10, len(rows))
        screenshot(page, "tabular-batch")

        # Dropping a file works the same way; a file without the model's columns is rejected.
        page.evaluate("""(text) => {
            const data = new DataTransfer();
            data.items.add(new File([text], 'wrong.csv', {type: 'text/csv'}));
            document.getElementById('batch-drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""", "a,b\n1,2\n")
        page.wait_for_function("() => document.querySelector('#batch-status').dataset.code === 'csv-missing-columns'")
        assert page.is_hidden("#batch-download")
        assert names[0] in page.text_content("#batch-status")

        # One row: the status is singular.
        page.set_input_files("#batch-file", files=[{"name": "one.csv", "mimeType": "text/csv",
                                                    "buffer": _csv_text(["id", *names], rows[:1]).encode()}])
        page.wait_for_selector("#batch-download", state="visible")
        assert page.text_content("#batch-status") == "Predicted 1 row."
        assert page.text_content("#batch-preview caption") == "First 1 row"

        # A header without data rows is rejected and offers no download.
        page.set_input_files("#batch-file", files=[{"name": "header.csv", "mimeType": "text/csv",
                                                    "buffer": _csv_text(["id", *names], []).encode()}])
        page.wait_for_function("() => document.querySelector('#batch-status').dataset.code === 'csv-no-rows'")
        assert page.text_content("#batch-status") == (
            "The CSV file could not be used: the file has a header row but no data rows")
        assert page.is_hidden("#batch-download")
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Image inputs


def _png(draw) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (200, 200), "white")
    draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_image_file_drop_and_keyboard(digits_app, browser, served):
    zero = _png(lambda d: d.ellipse((60, 30, 140, 170), outline="black", width=14))
    one = _png(lambda d: d.line((100, 25, 100, 175), fill="black", width=14))
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(digits_app).url)
        wait_for_prediction(page, lambda: page.set_input_files(
            "#file-input", files=[{"name": "zero.png", "mimeType": "image/png", "buffer": zero}]))
        assert page.get_attribute("#predicted-label", "data-label") == "0"

        page.evaluate("""(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'one.png', {type: 'image/png'}));
            document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""", base64.b64encode(one).decode())
        page.wait_for_function("() => document.querySelector('#predicted-label').dataset.label === '1'")

        # Keyboard drawing: a vertical stroke with the pen moved by arrow keys is a "1".
        page.click("#clear-button")
        page.focus("#draw-pad")
        page.keyboard.press("ArrowUp")
        for _ in range(3):
            page.keyboard.press("ArrowUp")
        page.keyboard.press("Space")
        for _ in range(8):
            page.keyboard.press("ArrowDown")
        wait_for_prediction(page, lambda: page.keyboard.press("Space"))
        assert page.get_attribute("#predicted-label", "data-label") == "1"
        screenshot(page, "image")

        # Delete clears the drawing and the result with its feedback buttons.
        assert page.is_visible("#feedback")
        page.keyboard.press("Delete")
        assert page.locator("#predicted-label").count() == 0
        assert page.is_hidden("#feedback")

        # A file that is not a readable image clears the result and shows the error next to the inputs.
        wait_for_prediction(page, lambda: page.set_input_files(
            "#file-input", files=[{"name": "zero.png", "mimeType": "image/png", "buffer": zero}]))
        page.set_input_files("#file-input", files=[{"name": "broken.png", "mimeType": "image/png",
                                                    "buffer": b"not a png"}])
        page.wait_for_selector("#image-error:not(:empty)")
        assert page.text_content("#image-error").startswith("This file could not be read as an image: ")
        assert page.locator("#predicted-label").count() == 0
        assert page.is_hidden("#feedback")
    finally:
        context.close()


def test_image_camera_capture(digits_app, browser, served):
    from builder.browser import launch_options

    server = served(digits_app)
    # Chromium's fake camera streams a moving test pattern.
    options = launch_options(("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"))
    camera_browser = browser.browser_type.launch(**options)
    try:
        context = camera_browser.new_context(locale="en-US")
        context.grant_permissions(["camera"], origin=server.url.rstrip("/"))
        page = open_app(context, server.url)
        page.wait_for_selector("#camera-button", state="visible")
        page.click("#camera-button")
        page.wait_for_selector("#capture-button", state="visible")
        assert page.get_attribute("#camera-button", "aria-pressed") == "true"
        page.wait_for_function("() => document.querySelector('#camera-video').videoWidth > 0")
        wait_for_prediction(page, lambda: page.click("#capture-button"))
        assert page.get_attribute("#predicted-label", "data-label") in metadata_of(digits_app)["output"]["labels"]
        screenshot(page, "image-camera")
        page.click("#camera-button")
        assert page.is_hidden("#camera-video")
    finally:
        camera_browser.close()


def test_camera_button_hidden_without_camera(digits_app, browser, served):
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(digits_app).url)
        has_camera = page.evaluate("async () => (await navigator.mediaDevices.enumerateDevices()).some((d) => d.kind === 'videoinput')")
        assert page.is_hidden("#camera-button") == (not has_camera)
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Backends


def _runtime(page) -> dict:
    return page.evaluate("""() => ({backend: webml.backend, how: webml.how, warmupMs: webml.warmupMs,
        skipped: webml.skipped, forcedFailure: webml.forcedFailure, isolated: self.crossOriginIsolated,
        stored: JSON.parse(localStorage.getItem('webml.backend') || 'null')})""")


def test_backend_chosen_by_warmup_and_remembered(iris_app, browser, served):
    metadata = metadata_of(iris_app)
    server = served(iris_app)
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, server.url)
        first = _runtime(page)
        assert first["how"] == "measured"
        measured = first["warmupMs"]
        skipped = {s["backend"] for s in first["skipped"]}
        assert set(measured) | skipped == set(metadata["app"]["backends"])
        assert {"wasm", "cpu"} <= set(measured)
        assert first["backend"]["name"] == min(measured, key=measured.get)
        for skip in first["skipped"]:
            # Headless Chromium may lack WebGPU (or WebGL); the page names the reason.
            assert skip["code"] in ("webgpu-missing", "webgpu-no-adapter", "webgl-missing"), skip
            item = page.locator(f"#skipped-status li[data-backend={skip['backend']}]")
            assert item.get_attribute("data-code") == skip["code"]
            assert item.text_content().startswith(f"{skip['backend']} not used: ")
            if skip["code"] == "webgpu-no-adapter":
                docs = (ROOT / "docs" / "web-app.md").read_text(encoding="utf-8")
                assert f'`window.webml.skipped[].reason` is "{skip["reason"]}"' in docs
                assert item.text_content() == f"webgpu not used: {MESSAGES['en']['backend.webgpu-no-adapter']}"
        assert first["stored"] == {"model": metadata["model"]["sha256"], "backend": first["backend"]["name"]}
        assert page.get_attribute("#backend-status", "data-backend") == first["backend"]["name"]
        assert page.is_visible("#warmup-status")
        assert page.is_visible("#latency-status")
        page.reload()
        page.wait_for_function(READY)
        second = _runtime(page)
        assert second["how"] == "remembered"
        assert second["backend"]["name"] == first["backend"]["name"]
        assert list(second["warmupMs"]) == [first["backend"]["name"]]
        assert page.text_content("#how-status") == "remembered from an earlier warm-up"

        with page.expect_navigation():
            page.click("#remeasure-button")
        page.wait_for_function(READY)
        assert _runtime(page)["how"] == "measured"
    finally:
        context.close()


def test_backend_forced_by_query(iris_app, yield_app, browser, served):
    server = served(iris_app)
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, server.url + "?backend=cpu")
        runtime = _runtime(page)
        assert runtime["how"] == "forced"
        assert runtime["backend"]["name"] == "cpu"
        assert runtime["stored"] is None
        assert page.text_content("#how-status") == "requested with ?backend=cpu"
        assert page.text_content("#runtime-status").count("?backend=") == 1
        assert page.is_hidden("#backend-notice")

        page.goto(server.url + "?backend=tpu")
        page.wait_for_function(READY)
        runtime = _runtime(page)
        assert runtime["forcedFailure"]["code"] == "backend-unknown"
        assert "there is no backend of that name" in page.text_content("#backend-notice")
        assert runtime["how"] == "measured"

        # The yield app is built with wasm and cpu only.
        page.goto(served(yield_app).url + "?backend=webgl")
        page.wait_for_function(READY)
        runtime = _runtime(page)
        assert runtime["forcedFailure"]["code"] == "backend-not-built"
        notice = page.text_content("#backend-notice")
        assert notice.startswith("The requested backend “webgl” could not start: it is not part of this build "
                                 "(built with wasm, cpu)")
        assert notice.endswith(f"Using {runtime['backend']['name']} instead.")
        assert runtime["backend"]["name"] in ("wasm", "cpu")
    finally:
        context.close()


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "not-isolated"])
def test_wasm_threads_follow_isolation(iris_app, browser, served, isolate):
    server = served(iris_app, isolate=isolate)
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, server.url + "?backend=wasm")
        runtime = _runtime(page)
        assert runtime["isolated"] is isolate
        assert runtime["backend"]["name"] == "wasm"
        assert runtime["backend"]["variant"] == ("threaded-simd" if isolate else "simd")
        assert runtime["backend"]["threads"] >= 1
        if not isolate:
            assert runtime["backend"]["threads"] == 1
        # The service worker precaches the binary this browser uses and not the other variants.
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        cached = page.evaluate("async () => (await Promise.all((await caches.keys()).map(async (name) => "
                               "(await (await caches.open(name)).keys()).map((r) => r.url)))).flat()")
        binaries = sorted(url.rsplit("/", 1)[1] for url in cached if url.endswith(".wasm"))
        expected = "tfjs-backend-wasm-threaded-simd.wasm" if isolate else "tfjs-backend-wasm-simd.wasm"
        assert binaries == [expected]
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Service worker updates


def _version_of(body: bytes, url: str, manifests: dict[str, dict]) -> set[str]:
    """Return the names of the builds whose manifest lists ``url`` with these bytes."""
    digest = sha256(body)
    return {name for name, files in manifests.items() if url in files and digest.startswith(files[url])}


def test_update_flow_switches_version_on_consent(iris_app, browser, served, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(iris_app, site)
    v1 = {"metadata": metadata_of(site), "precache": precache_of(site)}
    server = served(site)
    context = browser.new_context(locale="en-US")
    loads: list[list[tuple[str, bytes]]] = []

    def record(response) -> None:
        if response.url.startswith(server.url) and response.status == 200 and loads:
            loads[-1].append((response.url.removeprefix(server.url).split("?")[0] or "index.html", response.body()))

    try:
        page = context.new_page()
        page.on("response", record)
        loads.append([])
        page.goto(server.url)
        page.wait_for_function(READY)
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        assert page.get_attribute("#model-version", "data-hash") == v1["metadata"]["model"]["sha256"]

        build_or_fail(SPECS / "iris.toml", site, "--set", "seed=8")
        v2 = {"metadata": metadata_of(site), "precache": precache_of(site)}
        assert v2["metadata"]["model"]["sha256"] != v1["metadata"]["model"]["sha256"]

        # Reloading shows version 1 still, whole, and offers version 2.
        loads.append([])
        page.reload()
        page.wait_for_function(READY)
        assert page.get_attribute("#model-version", "data-hash") == v1["metadata"]["model"]["sha256"]
        page.wait_for_selector("#update-banner", state="visible", timeout=60_000)
        assert page.text_content("#update-banner span") == "A new version of this app is available."

        loads.append([])
        with page.expect_navigation():
            page.click("#update-apply")
        page.wait_for_function(READY)
        assert page.get_attribute("#model-version", "data-hash") == v2["metadata"]["model"]["sha256"]
        outputs = page.evaluate("inputs => webml.predict(inputs)", [g["input"] for g in v2["metadata"]["golden"]])
        expected = [g["output"] for g in v2["metadata"]["golden"]]
        assert np.abs(np.asarray(outputs) - np.asarray(expected)).max() <= TOLERANCE
        caches = page.evaluate("() => caches.keys()")
        assert caches == [f"webml-iris-{v2['precache']['version']}"]
        assert page.is_hidden("#update-banner")
    finally:
        context.close()

    manifests = {name: {f["url"]: f["revision"] for f in build["precache"]["files"]}
                 for name, build in (("v1", v1), ("v2", v2))}
    for load, expected_version in zip(loads, ("v1", "v1", "v2")):
        versions = [(url, _version_of(body, url, manifests)) for url, body in load if url in manifests["v1"] | manifests["v2"]]
        assert versions, "no precached file was requested"
        mixed = [(url, names) for url, names in versions if expected_version not in names]
        assert not mixed, f"a {expected_version} page loaded files of another build: {mixed}"
        assert {"index.html", "metadata.json", "model/model.json"} <= {url for url, _ in versions}


# ---------------------------------------------------------------------------------------------
# Installability and offline start


def test_manifest_fields_and_icons(iris_app):
    from PIL import Image

    from builder.render import theme_colors

    manifest = json.loads((iris_app / "manifest.webmanifest").read_text())
    metadata = metadata_of(iris_app)
    assert manifest["name"] == metadata["title"] == "Iris species"
    assert manifest["short_name"]
    assert manifest["start_url"] == "./"
    assert manifest["scope"] == "./"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] == metadata["app"]["theme_color"]
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    purposes = set()
    for icon in manifest["icons"]:
        with Image.open(iris_app / icon["src"]) as image:
            assert f"{image.width}x{image.height}" == icon["sizes"]
            assert image.format == "PNG"
        purposes.add(icon["purpose"])
    assert {"any", "maskable"} <= purposes
    assert {icon["sizes"] for icon in manifest["icons"]} >= {"192x192", "512x512"}
    html = (iris_app / "index.html").read_text()
    assert '<link rel="manifest" href="manifest.webmanifest">' in html
    assert f'<meta name="theme-color" content="{metadata["app"]["theme_color"]}">' in html
    theme_css = (iris_app / "theme.css").read_text()
    assert f"--theme: {theme_colors(metadata['app']['theme_color'])['theme']};" in theme_css


def test_installable_and_opens_offline(iris_app, browser, served, tmp_path):
    from builder.browser import launch_options

    server = served(iris_app)
    metadata = metadata_of(iris_app)
    # Contexts without a profile are incognito, where Chromium reports "in-incognito".
    context = browser.browser_type.launch_persistent_context(str(tmp_path / "profile"), **launch_options())
    try:
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_function(READY)
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        cdp = context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == []
        start_url = page.evaluate("async () => new URL((await (await fetch('manifest.webmanifest')).json()).start_url, "
                                  "new URL('manifest.webmanifest', location.href)).href")
        server.stop()
        page.goto(start_url)
        page.wait_for_function(READY)
        outputs = page.evaluate("inputs => webml.predict(inputs)", [g["input"] for g in metadata["golden"]])
        assert np.abs(np.asarray(outputs) - np.asarray([g["output"] for g in metadata["golden"]])).max() <= TOLERANCE
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# file://, languages, accessibility, CSP


@pytest.mark.parametrize("locale, language", [("en-US", "en"), ("zh-TW", "zh-TW")])
def test_file_protocol_explains_serving(iris_app, browser, locale, language):
    context = browser.new_context(locale=locale)
    try:
        page = context.new_page()
        page.goto((iris_app / "index.html").as_uri())
        page.wait_for_selector("#file-notice", state="visible")
        notice = page.text_content("#file-notice")
        assert notice.startswith(MESSAGES[language]["file.heading"])
        assert page.text_content("#file-command") == f"webml serve {iris_app}"
        assert page.is_hidden("#main")
        screenshot(page, f"file-protocol-{language}")
    finally:
        context.close()


def _plural_base(key: str) -> str:
    """Return ``KEY`` for a plural variant ``KEY.one`` or ``KEY.other``, else ``key`` itself."""
    return re.sub(r"\.(zero|one|two|few|many|other)$", "", key)


def test_messages_table_complete():
    english, chinese = MESSAGES["en"], MESSAGES["zh-TW"]
    # zh-TW has no plural forms, so it needs only the ``.other`` variant of a plural message.
    english_keys = {key for key in english if not key.endswith(".one")}
    assert english_keys == set(chinese)
    for key in english:
        assert english[key].strip(), key
        other = f"{_plural_base(key)}.other"
        chinese_key = other if key.endswith(".one") else key
        assert chinese[chinese_key].strip(), key
        assert set(re.findall(r"\{(\w+)\}", english[key])) == set(re.findall(r"\{(\w+)\}", chinese[chinese_key])), key
    for key in english:
        if key != _plural_base(key):
            assert "{count}" in english[key], key
            assert f"{_plural_base(key)}.other" in english, key
    keys = set(re.findall(r"""data-i18n(?:-label)?="([\w.-]+)\"""", (ROOT / "templates" / "index.html.j2").read_text()))
    for source in (ROOT / "web" / "src").rglob("*.js"):
        keys |= set(re.findall(r"""\bt\('([\w.-]+)'""", source.read_text()))
    known = set(english) | {_plural_base(key) for key in english}
    assert keys and keys <= known, keys - known


def _i18n_texts(page) -> list[tuple[str, str, str]]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-i18n]')]
        .filter((element) => !element.dataset.i18nParams)
        .map((element) => [element.dataset.i18n, element.textContent, element.id])""")


def test_zh_tw_from_spec_and_browser(labels_app, iris_app, browser, served):
    chinese = MESSAGES["zh-TW"]
    # The spec sets zh-TW: the first paint is rendered in it and an English browser keeps it.
    assert f">{chinese['input.heading']}<" in (labels_app / "index.html").read_text()
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(labels_app).url)
        assert page.get_attribute("html", "lang") == "zh-TW"
        texts = _i18n_texts(page)
        assert len(texts) > 15
        for key, text, element in texts:
            assert text == chinese[key], (key, element)
        assert page.text_content("#app-status") == chinese["app.ready"]
        assert page.text_content("#backend-status").startswith("後端：")
        warmup = page.text_content("#warmup-status")
        assert warmup.startswith("暖機：")
        assert "毫秒" in warmup
        assert " ms" not in warmup

        # A choice in the menu wins over the spec and is remembered.
        page.select_option("#language-select", "en")
        assert page.text_content("#input-heading") == "Input"
        page.reload()
        page.wait_for_function(READY)
        assert page.get_attribute("html", "lang") == "en"
        assert page.text_content("#app-status") == "Ready"
    finally:
        context.close()

    # Without a language in the spec, the browser's language decides.
    context = browser.new_context(locale="zh-TW")
    try:
        page = open_app(context, served(iris_app).url)
        assert page.get_attribute("html", "lang") == "zh-TW"
        assert page.text_content("#input-heading") == chinese["input.heading"]
        assert page.text_content(f"#feature-0-hint").startswith("訓練資料範圍")
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        assert page.text_content("#predicted-label").startswith("預測：")
        screenshot(page, "tabular-multiclass-zh-TW")
    finally:
        context.close()


CONTRAST_SCRIPT = """(selectors) => {
    const luminance = (rgb) => {
        const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const parse = (color) => color.match(/[\\d.]+/g).slice(0, 4).map(Number);
    const background = (element) => {
        for (let node = element; node; node = node.parentElement) {
            const color = parse(getComputedStyle(node).backgroundColor);
            if (color.length < 4 || color[3] > 0) return color.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const results = [];
    for (const selector of selectors) {
        for (const element of document.querySelectorAll(selector)) {
            if (!element.offsetParent || !element.textContent.trim()) continue;
            const a = luminance(parse(getComputedStyle(element).color).slice(0, 3));
            const b = luminance(background(element));
            results.push([selector, element.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
        }
    }
    return results;
}"""


def test_controls_labelled_keyboard_reachable_and_contrasted(iris_app, browser, served):
    context = browser.new_context(locale="en-US")
    try:
        page = open_app(context, served(iris_app).url)
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, button, a, canvas[tabindex], textarea')]
            .filter((element) => element.offsetParent || element.type === 'file')
            .filter((element) => {
                const labels = element.labels ? [...element.labels].map((l) => l.textContent.trim()).join('') : '';
                const labelledBy = (element.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
                    .map((id) => document.getElementById(id)?.textContent.trim() || '').join('');
                return !(labels || element.getAttribute('aria-label') || labelledBy || element.textContent.trim());
            })
            .map((element) => element.outerHTML.slice(0, 80))""")
        assert unnamed == []

        reached = []
        for _ in range(40):
            page.keyboard.press("Tab")
            focused = page.evaluate("""() => {
                const element = document.activeElement;
                const ring = element.matches('.file-button input') ? element.parentElement : element;
                const style = getComputedStyle(ring);
                return {id: element.id, outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
            }""")
            if focused["id"]:
                reached.append(focused["id"])
                assert focused["outline"] != "none", focused
                assert focused["width"] >= 2, focused
        for control in ("example-select", "feature-0", "predict-button", "reset-button", "batch-file",
                        "language-select", "remeasure-button"):
            assert control in reached

        contrasts = page.evaluate(CONTRAST_SCRIPT, ["h1", "h2", "label", ".hint", "button", ".link-button",
                                                    ".bar-label", ".bar-value", "footer li", "#predicted-label"])
        assert contrasts
        low = [c for c in contrasts if c[2] < 4.5]
        assert low == []
    finally:
        context.close()


def test_csp_allows_no_inline_code(iris_app, browser, served):
    import markupsafe

    from builder.render import CONTENT_SECURITY_POLICY

    html = (iris_app / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html
    assert re.search(r"\son\w+=", html) is None
    assert f'content="{markupsafe.escape(CONTENT_SECURITY_POLICY)}"' in html
    server = served(iris_app)
    context = browser.new_context(locale="en-US")
    context.add_init_script("window.__violations = []; document.addEventListener('securitypolicyviolation', "
                            "(e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));")
    try:
        page = context.new_page()
        response = page.goto(server.url + "?backend=wasm")
        assert response.headers["content-security-policy"].startswith(CONTENT_SECURITY_POLICY)
        page.wait_for_function(READY)
        # The threaded WASM backend starts its workers from blob: URLs under this policy.
        assert page.evaluate("() => webml.backend.variant") == "threaded-simd"
        wait_for_prediction(page, lambda: page.select_option("#example-select", "0"))
        assert page.evaluate("() => window.__violations") == []
    finally:
        context.close()


def test_model_files_of_another_build_rejected(iris_app, binary_app, browser, served, tmp_path):
    # A page loaded from the network while the site is replaced could pair one build's
    # metadata.json with another build's model files. The page checks the model's digest.
    copy = tmp_path / "iris"
    shutil.copytree(iris_app, copy)
    shutil.rmtree(copy / "model")
    shutil.copytree(binary_app / "model", copy / "model")
    context = browser.new_context(locale="en-US", service_workers="block")
    try:
        page = context.new_page()
        page.goto(served(copy).url)
        page.wait_for_function(READY)
        state = page.evaluate("() => ({state: webml.state, code: webml.errorCode})")
        assert state == {"state": "failed", "code": "model-mismatch"}
        assert page.get_attribute("#error-notice", "data-code") == "model-mismatch"
        assert "reload the page" in page.text_content("#error-notice")
    finally:
        context.close()
