"""Rendering of the static site: HTML from Jinja templates, the web app manifest, icons,
metadata.json and the service worker with its precache manifest.

This module owns the one Jinja environment (``StrictUndefined``, so a missing variable is an
error naming the template and line instead of an empty string).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from .bundle import PROJECT_ROOT, WEB_DIR
from .errors import BuildError

TEMPLATES_DIR = PROJECT_ROOT / "templates"
MESSAGES_PATH = WEB_DIR / "src" / "messages.json"
SERVICE_WORKER_SOURCE = WEB_DIR / "src" / "sw.js"
# Files in the output folder that the app never fetches, so the service worker does not precache them.
NOT_PRECACHED = frozenset({"sw.js", "report.json", "report.html"})
NOT_PRECACHED_DIRS = ("report/",)
REVISION_HEX_DIGITS = 16
# Backgrounds that theme-coloured text sits on (web/src/app.css: --surface, --panel, the banner).
LIGHT_BACKGROUNDS = ("#ffffff", "#f3f5f8", "#e7f0fd")
MIN_TEXT_CONTRAST = 4.5
# Content-Security-Policy of the app: only this origin. 'wasm-unsafe-eval' lets WebAssembly
# compile. The threaded WASM backend starts its workers from blob: URLs that the page's own
# script creates, and those workers load the backend's glue code with importScripts(blob:),
# so blob: is allowed for scripts and workers. data:/blob: images hold the pictures a person
# picks or takes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' blob:; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; "
    "worker-src 'self' blob:; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Return the Jinja environment for ``templates/``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_compact"] = lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return env


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render one template; a template error becomes a ``BuildError`` naming the template and line."""
    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise BuildError(f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise BuildError(f"templates/{name}: {exc.message}; pass that value to the template") from exc


@lru_cache(maxsize=1)
def messages() -> dict[str, dict[str, str]]:
    return json.loads(MESSAGES_PATH.read_text(encoding="utf-8"))


def message_lookup(language: str):
    """Return ``msg(key, **params)`` for the given language, falling back to English."""
    table = messages().get(language, {})
    english = messages()["en"]

    def msg(key: str, **params: Any) -> str:
        text = table.get(key) or english.get(key)
        if text is None:
            raise BuildError(f"{MESSAGES_PATH}: message key '{key}' not found; add it to every language")
        for name, value in params.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    return msg


def render_index(out: Path, metadata: dict[str, Any], description: str) -> None:
    """Write index.html for the app described by ``metadata``."""
    language = metadata["app"]["language"]
    first_paint = language if language != "auto" else "en"
    html = render_template("index.html.j2", {
        "title": metadata["title"],
        "description": description,
        "language": first_paint,
        "configured_language": language,
        "theme_color": metadata["app"]["theme_color"],
        "input_kind": metadata["input"]["kind"],
        "task": metadata["output"]["task"],
        "csp": CONTENT_SECURITY_POLICY,
        "msg": message_lookup(first_paint),
    })
    (out / "index.html").write_text(html, encoding="utf-8")


def write_manifest(out: Path, metadata: dict[str, Any], short_name: str, description: str, background: str) -> None:
    """Write the web app manifest that makes the app installable."""
    manifest = {
        "name": metadata["title"],
        "short_name": short_name,
        "description": description,
        "id": "./",
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "dir": "ltr",
        "theme_color": metadata["app"]["theme_color"],
        "background_color": background,
        "lang": metadata["app"]["language"] if metadata["app"]["language"] != "auto" else "en",
        "icons": [
            {"src": "icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
    }
    (out / "manifest.webmanifest").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_icons(out: Path, text: str, color: str) -> None:
    """Draw the app icons: the title's initials on the theme colour, in black or white for contrast.

    The maskable icon keeps its glyph inside the central 80% safe zone that platforms may crop to.
    """
    from PIL import Image, ImageDraw, ImageFont

    (out / "icons").mkdir(exist_ok=True)
    glyph_color = theme_colors(color)["on-theme"]
    initials = "".join(word[0] for word in text.split()[:2]).upper() or "M"
    for name, size, glyph_fraction, rounded in (
        ("icon-192.png", 192, 0.5, True), ("icon-512.png", 512, 0.5, True), ("icon-maskable-512.png", 512, 0.36, False),
    ):
        image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        if rounded:
            draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=size // 6, fill=color)
        else:
            draw.rectangle((0, 0, size, size), fill=color)
        font = ImageFont.load_default(size=int(size * glyph_fraction))
        draw.text((size / 2, size / 2), initials, fill=glyph_color, font=font, anchor="mm")
        # Pillow writes no timestamps into PNGs, so equal inputs give equal bytes.
        image.save(out / "icons" / name, format="PNG", optimize=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def precache_entries(out: Path, variants: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """List every file the app fetches, from the files actually written, with its revision.

    ``variants`` maps a variant name to the file only that variant needs, such as "simd" to
    runtime/tfjs-backend-wasm-simd.wasm. The service worker precaches such a file only on
    devices that use that variant.
    """
    by_file = {file: variant for variant, file in (variants or {}).items()}
    entries = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        if relative in NOT_PRECACHED or relative.startswith(NOT_PRECACHED_DIRS) or relative.startswith("."):
            continue
        entry = {"url": relative, "revision": file_sha256(path)[:REVISION_HEX_DIGITS], "bytes": path.stat().st_size}
        if relative in by_file:
            entry["variant"] = by_file[relative]
        entries.append(entry)
    return entries


def write_service_worker(out: Path, name: str, variants: dict[str, str] | None = None) -> dict[str, Any]:
    """Write sw.js with the precache manifest of everything in ``out``; returns the manifest.

    ``variants`` is passed to ``precache_entries``.
    """
    files = precache_entries(out, variants)
    version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:REVISION_HEX_DIGITS]
    manifest = {"name": name, "version": version, "files": files}
    header = "// Generated by webml: the precache manifest of this build.\nconst PRECACHE = " + json.dumps(
        manifest, indent=1, sort_keys=True) + ";\n\n"
    (out / "sw.js").write_text(header + SERVICE_WORKER_SOURCE.read_text(encoding="utf-8"), encoding="utf-8")
    return manifest


def relative_luminance(color: str) -> float:
    """Return the WCAG 2 relative luminance of a ``#rrggbb`` colour."""
    channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """Return the WCAG 2 contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _darken(color: str, fraction: float) -> str:
    return "#" + "".join(f"{round(int(color[i:i + 2], 16) * (1 - fraction)):02x}" for i in (1, 3, 5))


def theme_colors(theme: str) -> dict[str, str]:
    """Derive the page's colours from the spec's theme colour.

    ``on-theme`` is black or white, whichever contrasts more with the theme (at least 4.58:1
    for any colour). ``theme-text`` is the theme darkened until it reaches 4.5:1 (WCAG AA for
    text) on the lightest and darkest of the app's light backgrounds.
    """
    on_theme = "#ffffff" if contrast_ratio(theme, "#ffffff") >= contrast_ratio(theme, "#000000") else "#000000"
    text = theme.lower()
    step = 0
    while min(contrast_ratio(text, background) for background in LIGHT_BACKGROUNDS) < MIN_TEXT_CONTRAST:
        step += 1
        text = _darken(theme, step * 0.05)
    return {"theme": theme.lower(), "on-theme": on_theme, "theme-text": text}


def write_theme(out: Path, theme: str) -> dict[str, str]:
    """Write theme.css, which sets the colour variables that app.css uses; returns the colours."""
    colors = theme_colors(theme)
    lines = [f"  --{name}: {value};" for name, value in colors.items()]
    (out / "theme.css").write_text(":root {\n" + "\n".join(lines) + "\n}\n", encoding="utf-8")
    return colors


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
