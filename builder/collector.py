"""Collection of aggregated monitoring reports into SQLite (``webml serve --collect DB``).

The app sends counts, never raw inputs: per-feature bin counts, prediction counts, latency sums
and feedback tallies for one client and one model variant. A report is validated against a strict
shape (known keys only, bounded sizes, finite non-negative numbers); a malformed or oversized one
is rejected with HTTP 400 or 413 and a reason. A report for a model whose build was registered
(``webml serve DIST --collect DB`` registers DIST) must also name only that build's features,
with its number of bins. A report is acknowledged (HTTP 200) only after its
SQLite transaction has committed with ``synchronous=FULL``, so an acknowledged report survives a
crash. Each report carries a client-generated id; a retried report is stored once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPORT_PATH = "/api/monitor"
REPORT_SCHEMA = 1
MAX_REPORT_BYTES = 64 * 1024
MAX_FEATURES = 512
MAX_BINS = 256
MAX_TEXT = 128
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_HEX = re.compile(r"^[0-9a-f]{16,64}$")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    received REAL NOT NULL,
    app TEXT NOT NULL,
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    client TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_variant ON reports (app, variant);
CREATE TABLE IF NOT EXISTS apps (
    app TEXT NOT NULL,
    model TEXT NOT NULL,
    monitor TEXT NOT NULL,
    PRIMARY KEY (app, model)
);
"""


class ReportError(ValueError):
    """A monitoring report that does not have the expected shape."""


def _number_list(value: Any, where: str, limit: int = MAX_BINS) -> list[float]:
    if not isinstance(value, list) or len(value) > limit:
        raise ReportError(f"{where} must be a list of at most {limit} numbers")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item < 0:
            raise ReportError(f"{where} must hold finite non-negative numbers, found {item!r}")
    return [float(v) for v in value]


def _text(value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or (pattern and not pattern.match(value)):
        raise ReportError(f"{where} must be a short string{' of the expected form' if pattern else ''}")
    return value


def _only_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ReportError(f"{where} has unknown key '{unknown[0]}'; reports carry counts only")


def validate_report(data: Any) -> dict[str, Any]:
    """Return the report if it has the expected shape; raise ``ReportError`` naming the problem."""
    if not isinstance(data, dict):
        raise ReportError("the report must be a JSON object")
    _only_keys(data, {"schema", "id", "app", "model", "variant", "client", "count", "features", "predictions",
                      "latency_ms", "feedback"}, "report")
    if data.get("schema") != REPORT_SCHEMA:
        raise ReportError(f"report.schema must be {REPORT_SCHEMA}")
    _text(data.get("id"), "report.id", _ID)
    _text(data.get("app"), "report.app")
    _text(data.get("model"), "report.model", _HEX)
    _text(data.get("variant"), "report.variant")
    _text(data.get("client"), "report.client", _ID)
    count = data.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10**9:
        raise ReportError("report.count must be a non-negative integer")
    features = data.get("features", {})
    if not isinstance(features, dict) or len(features) > MAX_FEATURES:
        raise ReportError(f"report.features must be an object of at most {MAX_FEATURES} features")
    for name, feature in features.items():
        _text(name, "a feature name")
        if not isinstance(feature, dict):
            raise ReportError(f"report.features['{name}'] must be an object")
        _only_keys(feature, {"bins", "missing"}, f"report.features['{name}']")
        _number_list(feature.get("bins", []), f"report.features['{name}'].bins")
        _number_list([feature.get("missing", 0)], f"report.features['{name}'].missing", 1)
    predictions = data.get("predictions", {})
    if not isinstance(predictions, dict):
        raise ReportError("report.predictions must be an object")
    _only_keys(predictions, {"counts"}, "report.predictions")
    _number_list(predictions.get("counts", []), "report.predictions.counts")
    for key, fields in (("latency_ms", {"sum", "count"}), ("feedback", {"total", "wrong"})):
        part = data.get(key, {})
        if not isinstance(part, dict):
            raise ReportError(f"report.{key} must be an object")
        _only_keys(part, fields, f"report.{key}")
        _number_list([part.get(f, 0) for f in sorted(fields)], f"report.{key}", 2)
    return data


def check_against_monitor(report: dict[str, Any], monitor: dict[str, Any]) -> None:
    """Raise ``ReportError`` unless the report's features and bins match a build's training statistics."""
    expected = {feature["name"]: len(feature["expected"]) for feature in monitor["features"]}
    for name, feature in report.get("features", {}).items():
        if name not in expected:
            raise ReportError(f"report.features has unknown feature '{name}' for model {report['model'][:12]}")
        bins = len(feature.get("bins", []))
        if bins != expected[name]:
            raise ReportError(f"report.features['{name}'].bins has {bins} bins; model {report['model'][:12]} "
                              f"has {expected[name]}")
    predictions = monitor["predictions"]
    slots = len(predictions["labels"]) + 1 if predictions["kind"] == "labels" else len(predictions["expected"])
    counts = len(report.get("predictions", {}).get("counts", []))
    if counts not in (0, slots):
        raise ReportError(f"report.predictions.counts has {counts} entries; model {report['model'][:12]} has {slots}")


def monitors_by_model(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map each model digest of a build (both A/B variants) to its training statistics."""
    monitor = metadata.get("monitor")
    if not monitor:
        return {}
    result = {metadata["model"]["sha256"]: monitor}
    for variant in metadata.get("ab", {}).get("variants", []):
        result[variant["sha256"]] = {**monitor, "predictions": variant.get("predictions", monitor["predictions"])}
    return result


class Collector:
    """Stores monitoring reports in one SQLite file; safe to call from the server's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.executescript(SCHEMA_SQL)
        self.monitors = {(app, model): json.loads(monitor)
                         for app, model, monitor in self.connection.execute("SELECT app, model, monitor FROM apps")}

    def register_app(self, metadata: dict[str, Any]) -> None:
        """Store the training statistics of a served app, for validation and ``webml monitor``."""
        with self.lock:
            for model, monitor in monitors_by_model(metadata).items():
                self.connection.execute("INSERT OR REPLACE INTO apps (app, model, monitor) VALUES (?, ?, ?)",
                                        (metadata["name"], model, json.dumps(monitor)))
                self.monitors[(metadata["name"], model)] = monitor

    def store(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Validate and store one report; returns (HTTP status, JSON answer)."""
        if len(body) > MAX_REPORT_BYTES:
            return 413, {"error": f"report over {MAX_REPORT_BYTES} bytes"}
        try:
            report = validate_report(json.loads(body.decode("utf-8")))
            monitor = self.monitors.get((report["app"], report["model"]))
            if monitor is not None:
                check_against_monitor(report, monitor)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            log.info("rejected a monitoring report: invalid JSON (%s)", exc)
            return 400, {"error": f"invalid JSON: {exc}"}
        except ReportError as exc:
            log.info("rejected a monitoring report: %s", exc)
            return 400, {"error": str(exc)}
        with self.lock:
            try:
                self.connection.execute("BEGIN IMMEDIATE")
                cursor = self.connection.execute(
                    "INSERT OR IGNORE INTO reports (id, received, app, model, variant, client, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (report["id"], time.time(), report["app"], report["model"], report["variant"], report["client"],
                     json.dumps(report, separators=(",", ":"))))
                self.connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                log.error("storing monitoring report %s failed: %s", report["id"], exc)
                return 503, {"error": "the report could not be stored; retry later"}
        duplicate = cursor.rowcount == 0
        return 200, {"stored": report["id"], "duplicate": duplicate}

    def handlers(self) -> dict[str, Any]:
        """POST handlers for ``AppServer``."""
        return {REPORT_PATH: lambda handler, body: self.store(body)}

    def close(self) -> None:
        with self.lock:
            self.connection.close()
