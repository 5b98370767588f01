"""The ``webml`` command line. This is the only module that prints or exits.

Errors from the stages arrive as ``WebmlError`` subclasses and become one line on stderr with
exit code 2 (usage) or 1 (build failure); ``-v`` adds the traceback and debug logs. Any other
exception also becomes one line, with exit code 1. Ctrl-C exits with 130 and SIGTERM with 143,
after the running stage has removed its staging folders.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError, WebmlError
from .progress import Reporter

PROG = "webml"


class TerminalReporter(Reporter):
    """Prints stages and details on stderr; draws progress bars only on a terminal."""

    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.color = self.tty and "NO_COLOR" not in os.environ
        self.shown_warnings: set[str] = set()

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def step(self, message: str) -> None:
        if not self.quiet:
            print(self._style("* ", "1") + message, file=self.stream, flush=True)

    def detail(self, message: str) -> None:
        if not self.quiet:
            print("  " + message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        self.shown_warnings.add(message)
        print(self._style("warning: ", "33") + message, file=self.stream, flush=True)

    @contextlib.contextmanager
    def loop(self, label: str, total: int) -> Iterator[Any]:
        done = 0
        started = time.perf_counter()

        def advance(n: int = 1, note: str = "") -> None:
            nonlocal done
            done += n
            if self.tty and not self.quiet:
                width = 24
                filled = int(width * min(done, total) / max(total, 1))
                bar = "#" * filled + "-" * (width - filled)
                print(f"\r  {label} [{bar}] {done}/{total} {note}"[:120].ljust(100), end="", file=self.stream, flush=True)

        yield advance
        if self.tty and not self.quiet:
            print("\r" + " " * 120 + "\r", end="", file=self.stream, flush=True)
        if not self.quiet and total > 1:
            self.detail(f"{label}: {done} step(s) in {time.perf_counter() - started:.1f} s")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with webml's one-line usage errors and exit code 2."""

    def error(self, message: str) -> None:
        where = "" if self.prog == PROG else f"{self.prog}: "
        raise UsageError(f"{where}{message}; see `{self.prog} --help`")


def _number_in(low: float, high: float, kind: type = float, noun: str = "a value", above_low: bool = False) -> Any:
    """Return an argparse type: a number of ``kind`` from ``low`` (excluded with ``above_low``) to
    ``high``, or a one-line usage error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value > high or value < low or (above_low and value == low):
            bounds = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range; use {noun} {bounds}")
        return value
    return parse


BACKENDS = ("wasm", "webgl", "webgpu", "cpu")


def _add_build(commands: Any) -> None:
    parser = commands.add_parser("build", help="train, convert, render and verify an app from a spec",
                                 description="Build a tested, offline-capable web app from a TOML spec.")
    parser.add_argument("spec", type=Path, help="the project spec, e.g. models/digits.toml")
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: dist/NAME)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key, e.g. --set model.epochs=20 (repeatable)")
    parser.add_argument("--no-cache", action="store_true",
                        help="train and convert again instead of reusing results from the cache "
                             "(.webml-cache, or WEBML_CACHE_DIR)")


def _add_test(commands: Any) -> None:
    parser = commands.add_parser("test", help="check a built app in headless Chromium",
                                 description="Serve a built app on 127.0.0.1 and check it in headless Chromium.")
    parser.add_argument("dist", type=Path, help="a folder written by `webml build`, e.g. dist/digits")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--backend", action="append", dest="backends", choices=BACKENDS, metavar="NAME",
                        help="check only this backend, and fail if it does not run: wasm, webgl, webgpu or cpu "
                             "(repeatable; default: the build's backends, where an optional one may be skipped)")
    parser.add_argument("--tolerance", type=_number_in(0.0, 1.0, above_low=True), metavar="X",
                        help="maximum absolute output difference (default: the build's verify.tolerance)")
    parser.add_argument("--screenshot", type=Path, metavar="PATH",
                        help="where to save the screenshot (default: test-results/NAME.png)")
    parser.add_argument("--no-offline", action="store_true", help="skip the check with the server stopped")


def _add_serve(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve a built app over HTTP",
                                 description="Serve a built app with the headers it needs (MIME types, "
                                             "cross-origin isolation for WASM threads, no-cache for sw.js).")
    parser.add_argument("dist", type=Path, help="a folder written by `webml build`")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_number_in(0, 65535, int, "a port"), default=8000,
                        help="TCP port (default: 8000; 0 picks a free one)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="omit the COOP/COEP headers (WASM then runs single-threaded)")
    parser.add_argument("--collect", type=Path, metavar="DB",
                        help="accept aggregated monitoring reports from the app into this SQLite file")


def _add_monitor(commands: Any) -> None:
    parser = commands.add_parser("monitor", help="summarize drift from collected monitoring reports",
                                 description="Print per-variant and per-feature drift from reports that "
                                             "`webml serve --collect DB` stored.")
    parser.add_argument("db", type=Path, help="the SQLite file given to `webml serve --collect`")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary as JSON to PATH")


def _add_convert(commands: Any) -> None:
    parser = commands.add_parser("convert", help="convert a Keras or TensorFlow model to TF.js and check it in Chromium",
                                 description="Convert a Keras 3 .keras file, a Keras .h5 file or a SavedModel folder "
                                             "to a TF.js graph model (and a layers model), and check in Chromium "
                                             "that it predicts what Python predicts.")
    parser.add_argument("model", type=Path, help="a .keras file, a .h5 file or a SavedModel folder")
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: dist/NAME)")
    parser.add_argument("--format", choices=("graph", "layers"), default="graph",
                        help="graph: a graph model only (default); layers: a tfjs-layers model as well, for fine-tuning")
    parser.add_argument("--quantize", choices=("float16", "uint16", "uint8"),
                        help="store the weights in this dtype (default: float32)")
    parser.add_argument("--shard-bytes", type=int, default=4 * 1024 * 1024, metavar="BYTES",
                        help="maximum size of one weight file in bytes (default: 4194304)")
    parser.add_argument("--tolerance", type=float, default=1e-4, metavar="X",
                        help="maximum absolute difference between the TF.js and the Python outputs (default: 0.0001)")
    parser.add_argument("--samples", type=int, default=8, metavar="N", help="number of generated inputs to compare (default: 8)")
    parser.add_argument("--app", type=Path, metavar="SCHEMA",
                        help="also render the web app, described by this TOML schema (see docs/convert.md)")


def _add_output_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="show debug logs and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print only warnings, errors and the result")


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Build, test and serve browser apps for Keras models with TensorFlow.js.")
    _add_output_options(parser, False)
    # The same options after the command (`webml build SPEC -v`); SUPPRESS keeps a value given
    # before the command.
    common = argparse.ArgumentParser(add_help=False)
    _add_output_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    original_add_parser = commands.add_parser

    def add_parser(name: str, **kwargs: Any) -> ArgumentParser:
        return original_add_parser(name, parents=[common], **kwargs)

    commands.add_parser = add_parser
    commands.required = True
    _add_build(commands)
    _add_test(commands)
    _add_serve(commands)
    _add_monitor(commands)
    _add_convert(commands)
    return parser


def cmd_build(args: argparse.Namespace, reporter: TerminalReporter) -> int:
    from .spec import load_spec, parse_override

    overrides = dict(parse_override(item) for item in args.overrides)
    spec = load_spec(args.spec, overrides)
    output = args.output or Path("dist") / spec.name
    reporter.step(f"building {spec.name} from {args.spec} into {output}")
    from .native import import_tensorflow

    import_tensorflow()
    from .build import build
    from .cache import StageCache, default_root

    cache = None if args.no_cache else StageCache(default_root())
    result = build(spec, output, reporter=reporter, cache=cache)
    if result.worker is not None:
        print(f"tuning worker {result.worker['tuner_id']} ran {len(result.worker['trials'])} trial(s); "
              "the chief builds the app")
        return 0
    # Most warnings were shown as they arose; the rest (cache writes) are shown here.
    for warning in result.warnings:
        if warning not in reporter.shown_warnings:
            reporter.warn(warning)
    metrics = result.report["metrics"]
    seconds = result.report["timings_seconds"]["total"]
    checks = ""
    if result.verification is not None:
        passed = sum(c.status == "passed" for c in result.verification.checks)
        skipped = sum(c.status == "skipped" for c in result.verification.checks)
        checks = f", {passed} browser checks passed" + (f" ({skipped} skipped)" if skipped else "")
    print(f"built {output} in {seconds:.1f} s: test {metrics['primary_metric']} {metrics['test_primary']:.4f} "
          f"(the float32 model, in Python){checks}")
    optimization = result.report.get("optimization")
    if optimization and optimization.get("ab"):
        print("  models: A/B test, " + ", ".join(f"{v['id']} = {v['name']} for {v['share']:.0%} of clients"
                                               for v in optimization["ab"]["variants"]))
    elif optimization:
        shipped = next(v for v in optimization["variants"] if v["selected"])
        print(f"  model:  {shipped['name']}, {shipped['bytes']['raw'] / 1024:.1f} KiB ({shipped['bytes']['gzip'] / 1024:.1f} KiB gzip), "
              f"{optimization['metric']} {shipped['browser_metric']:.4f} measured in Chromium")
    reused = [name for name, stage in result.report["cache"]["stages"].items() if stage["status"] == "hit"]
    if reused:
        print(f"  cache:  {' and '.join(reused)} reused from {result.report['cache']['directory']}; --no-cache runs them again")
    print(f"  report: {output / 'report.html'}")
    print(f"  serve:  webml serve {output}   (then open http://127.0.0.1:8000/)")
    return 0


def cmd_test(args: argparse.Namespace, reporter: TerminalReporter) -> int:
    from .verify import load_site, verify_site

    site = load_site(args.dist)
    screenshot = args.screenshot or Path("test-results") / f"{site.metadata['name']}.png"
    result = verify_site(args.dist, backends=args.backends, tolerance=args.tolerance,
                         offline=not args.no_offline, screenshot=screenshot, reporter=reporter)
    width = max(len(c.name) for c in result.checks)
    for check in result.checks:
        print(f"{check.status.upper():8} {check.name.ljust(width)}  {check.detail}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    counts = {status: sum(c.status == status for c in result.checks) for status in ("passed", "skipped", "failed")}
    summary = f"{counts['passed']} of {len(result.checks)} checks passed"
    summary += "".join(f", {counts[status]} {status}" for status in ("skipped", "failed") if counts[status])
    print(f"{'passed' if result.passed else 'FAILED'}: {summary}, in {result.seconds:.1f} s; "
          f"screenshot {result.screenshot}")
    return 0 if result.passed else 1


def cmd_serve(args: argparse.Namespace, reporter: TerminalReporter) -> int:
    from .serve import AppServer
    from .verify import load_site

    site = load_site(args.dist)
    handlers = {}
    max_body = 0
    if args.collect:
        from .collector import MAX_REPORT_BYTES, REPORT_PATH, Collector

        collector = Collector(args.collect)
        collector.register_app(site.metadata)
        handlers = collector.handlers()
        max_body = MAX_REPORT_BYTES
        print(f"collecting monitoring reports at {REPORT_PATH} into {args.collect}", flush=True)
        # webml serve puts the app at the root, so a relative collect_url resolves from "/".
        collect_url = site.metadata.get("monitor", {}).get("collect_url", "")
        if not collect_url:
            reporter.warn(f"{args.dist} was built without monitor.collect_url, so its pages send no reports; "
                          f"rebuild with --set monitor.collect_url=\"{REPORT_PATH}\"")
        elif "/" + collect_url.lstrip("/") != REPORT_PATH:
            reporter.warn(f"{args.dist} sends its reports to {collect_url}, not to {REPORT_PATH}; "
                          f"rebuild with --set monitor.collect_url=\"{REPORT_PATH}\"")
    try:
        server = AppServer(args.dist, args.host, args.port, isolate=not args.no_isolation, post_handlers=handlers,
                           max_body_bytes=max_body or 256 * 1024)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from exc
    print(f"serving {args.dist} at {server.url} (Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        reporter.warn(f"listening on {args.host}: other machines on the network can reach this server")
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


def cmd_monitor(args: argparse.Namespace, reporter: TerminalReporter) -> int:
    from .monitor import summarize

    summaries = summarize(args.db)
    if not summaries:
        print(f"{args.db}: no reports yet")
    for s in summaries:
        latency = f"{s.mean_latency_ms:.1f} ms" if s.mean_latency_ms is not None else "n/a"
        accuracy = f"{s.feedback_accuracy:.1%} of {s.feedback_total}" if s.feedback_accuracy is not None else "no feedback"
        shift = "n/a"
        if s.prediction_psi is not None:
            shift = f"{s.prediction_psi:.3f} (limit {s.prediction_limit:.3f})" + (" SHIFT" if s.prediction_shift else "")
        print(f"{s.app} variant {s.variant} (model {s.model[:12]}): {s.predictions} predictions from {s.clients} "
              f"client(s) in {s.reports} report(s); mean latency {latency}; feedback accuracy {accuracy}; "
              f"prediction PSI {shift}")
        if not s.known_model:
            print("  no training statistics stored for this model; serve its build with --collect to register it")
            continue
        if s.features:
            width = max(len(f.name) for f in s.features)
            print(f"  {'feature'.ljust(width)}  inputs     PSI   limit      KS   limit  missing")
            for f in sorted(s.features, key=lambda f: -f.psi):
                flag = "  DRIFT" if f.drifted else ""
                # Too few inputs: the limits do not apply yet (the app's drift table shows "-" too).
                applies = f.samples >= f.min_samples
                psi_limit = f"{f.psi_limit:6.3f}" if applies else f"{'-':>6}"
                ks_limit = f"{f.ks_limit:6.3f}" if applies else f"{'-':>6}"
                ks = f"{f.ks:6.3f}  {ks_limit}" if math.isfinite(f.ks_limit) else f"{'n/a':>6}  {'':6}"
                if not applies:
                    flag = f"  (fewer than {f.min_samples} inputs)"
                print(f"  {f.name.ljust(width)}  {f.samples:6d}  {f.psi:6.3f}  {psi_limit}  {ks}  "
                      f"{f.missing_rate:7.1%}{flag}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([s.to_json() for s in summaries], indent=1) + "\n")
    return 0




def cmd_convert(args: argparse.Namespace, reporter: TerminalReporter) -> int:
    from .convert_model import ConvertOptions, convert_model, default_output

    output = args.output or default_output(args.model)
    options = ConvertOptions(layers=args.format == "layers", quantization=args.quantize or "float32",
                             shard_bytes=args.shard_bytes, tolerance=args.tolerance, samples=args.samples,
                             app_schema=args.app)
    result = convert_model(args.model, output, options, reporter=reporter)
    for warning in result.warnings:
        reporter.warn(warning)
    verification = result.report["verification"]
    artifacts = " and ".join(f"{kind} model ({info['bytes'] / 1024:.0f} KiB)"
                             for kind, info in result.report["artifacts"].items())
    seconds = result.report["timings_seconds"]["total"]
    print(f"converted {args.model} into {output} in {seconds:.1f} s: {artifacts}; {len(result.checks)} browser checks "
          f"passed, max |diff| {verification['max_abs_diff']:.2e} <= {verification['tolerance']:g}")
    if result.report["app"] is not None:
        print(f"  serve:  webml serve {output}   (then open http://127.0.0.1:8000/)")
    return 0


COMMANDS = {"build": cmd_build, "test": cmd_test, "serve": cmd_serve, "convert": cmd_convert, "monitor": cmd_monitor}


def _quiet_tensorflow(verbose: bool) -> None:
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that cleanup code runs before the process exits."""


# Signals received during this command. Ctrl-C also reaches Playwright's driver, which then
# fails the page that the build is checking, so the first exception to arrive can be that
# failure instead of KeyboardInterrupt. main() reports an interruption whenever a signal came.
_received_signals: list[int] = []


# Seconds the cleanup after a signal may take before the process exits without it.
SIGNAL_GRACE_SECONDS = 30
_watchdog: list[threading.Timer] = []
# The command main() runs, for the watchdog's message.
_command: list[str] = []


def _on_signal(signum: int, frame: Any) -> None:
    _received_signals.append(signum)
    if not _watchdog:
        _start_watchdog(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt()
    raise Terminated()


def _start_watchdog(signum: int) -> None:
    """Exit the process if the cleanup after ``signum`` has not finished in SIGNAL_GRACE_SECONDS.

    NOTE: once, under heavy load, a build interrupted during the browser checks never exited,
    probably waiting on Playwright after its driver had gone. It was not reproduced, so the cause
    is not known. The output folder is unchanged either way, and this exit removes the staging and
    scratch folders.
    """
    def expire() -> None:
        from .output import remove_temporaries

        remove_temporaries()
        word = "interrupted" if signum == signal.SIGINT else "terminated"
        unchanged = "; the previous output is unchanged" if _command and _command[0] in ("build", "convert") else ""
        print(f"{PROG}: {word}{unchanged} (cleanup took over {SIGNAL_GRACE_SECONDS} s and was cut short)",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)

    timer = threading.Timer(SIGNAL_GRACE_SECONDS, expire)
    timer.daemon = True
    timer.start()
    _watchdog.append(timer)


def describe_unexpected(exc: BaseException) -> str:
    """Return one error line for an exception that no stage turned into a ``WebmlError``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            fix = "free disk space and run the command again"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "check the permissions of that path or pick another one"
        else:
            fix = "check that path and run the command again"
        return f"{where}{exc.strerror}; {fix} (-v shows the traceback)"
    if isinstance(exc, MemoryError):
        return ("out of memory; use a smaller model or batch (model.units, model.batch_size) "
                "or free memory (-v shows the traceback)")
    text = str(exc).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    return (f"internal error ({type(exc).__name__}{detail}); rerun with -v for the traceback and report it "
            "with the command you ran")


def _report_signal(command: str | None, verbose: bool) -> int:
    """Print the line for an interrupted command and return its exit code (128 + the signal)."""
    if not verbose:
        # Ctrl-C also stops Playwright's driver. While the interpreter shuts down, Playwright's
        # event loop then reports the closed pipe in several ways: an asyncio log line ("Future
        # exception was never retrieved"), a RuntimeWarning about a coroutine never awaited, or
        # an exception ignored in a finalizer. The line printed below already says what happened.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        warnings.simplefilter("ignore")
        sys.unraisablehook = lambda unraisable: None
    signum = _received_signals[-1] if _received_signals else signal.SIGINT
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    # build and convert write into a staging folder and swap it in only at the end.
    unchanged = "; the previous output is unchanged" if command in ("build", "convert") else ""
    print(f"{PROG}: {word}{unchanged}", file=sys.stderr)
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _quiet_tensorflow(verbose)
    command = None
    _received_signals.clear()
    _watchdog.clear()
    _command.clear()
    previous = {}
    # signal.signal works only in the main thread; a main() called from another thread keeps
    # the default signal behaviour.
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        args, unknown = make_parser().parse_known_args(argv)
        command = args.command
        _command[:] = [command]
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}; see `{PROG} {command} --help`")
        reporter = TerminalReporter(quiet=args.quiet)
        return COMMANDS[command](args, reporter)
    except (KeyboardInterrupt, Terminated):
        return _report_signal(command, verbose)
    except WebmlError as exc:
        if _received_signals:
            return _report_signal(command, verbose)
        if verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line instead of a traceback.
        if _received_signals:
            return _report_signal(command, verbose)
        if verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {describe_unexpected(exc)}", file=sys.stderr)
        return 1
    finally:
        for timer in _watchdog:
            timer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
