"""Untrusted text stays data: secret redaction, log-line templating and strict names.

Called by ``rca.facts`` (host facts from the ``diagnose`` role), ``rca.context`` (labels, past
incidents) and ``rca.llm`` (a last pass over the whole prompt). Anything written on a host or
carried by a label can be hostile ("ignore previous instructions", a Jinja ``{{ }}`` payload, a
``$(...)``): it is reduced here before it reaches a prompt, the store or a screen.

* ``redact``: secrets (``password=...``, bearer tokens, private keys, cloud keys, URL
  credentials, the values the caller knows are secret) become ``<secret>``.
* ``template``: a log line keeps its constant words; its variable fields (quoted strings,
  numbers, addresses, paths, URLs, hex ids, ``key=value`` values, template and shell syntax)
  become placeholders, as a log-template miner (drain3) would, and the line is capped.
* ``name`` / ``label``: a process, unit or label value is kept only when it fully matches a
  strict pattern; anything else becomes a placeholder, never a truncated copy.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET = "<secret>"
LINE_MAX = 160
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
                re.S), SECRET),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {SECRET}"),
    (re.compile(r"(?i)([a-z0-9_.-]*(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|apikey|"
                r"access[_-]?key|auth|credentials?|private[_-]?key|session[_-]?id|cookie)"
                r"[a-z0-9_.-]*)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"),
     rf"\1\2{SECRET}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{SECRET}@"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), SECRET),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b"), SECRET),
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b"), SECRET),
    (re.compile(r"\b(?:ghp|gho|ghs|ghu|glpat|xox[abprs])[-_][A-Za-z0-9_-]{16,}\b"), SECRET),
)
# Order matters: the widest fields first, so a path inside a quoted string is one <str>.
_FIELDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\{\{.*?(\}\}|$)|\{%.*?(%\}|$)|\{#.*?(#\}|$)", re.S), "<template>"),
    (re.compile(r"\$\(.*?(\)|$)|\$\{.*?(\}|$)|`[^`]*(`|$)", re.S), "<command>"),
    (re.compile(r"\"(?:[^\"\\]|\\.)*(\"|$)|'(?:[^'\\]|\\.)*('|$)|“[^”]*(”|$)"), "<str>"),
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://\S+"), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                r"[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?"),
     "<time>"),
    (re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{0,4}\b"), "<ip>"),
    (re.compile(r"(?<![\w<])(?:~|\.{1,2})?/[^\s,;:()\[\]<>]*"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b"
                r"(?=\W|$)"), "<hex>"),
    # a key=value whose value is not one plain word (code=killed stays; pid=42, x=/a/b do not)
    (re.compile(r"(?<=[=:])(?![=\s])(?=[^\s<>,;]*[^\sA-Za-z<>,;_-])[^\s<>,;]+"), "<value>"),
    (re.compile(r"(?<![\w<])[-+]?\d+(\.\d+)*([eE][-+]?\d+)?[a-zA-Z%]{0,3}\b"), "<num>"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:+-]{0,63}")
_UNIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,126}\.(service|socket|timer|mount|target|path|"
                   r"scope|slice|swap|device|automount)")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._:@/+=-]{0,128}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets replaced by ``<secret>``: the ``secrets`` given (longest first)
    and anything that looks like a credential."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, SECRET)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def template(line: str, limit: int = LINE_MAX, secrets: Iterable[str] = ()) -> str:
    """A log line reduced to its template: variable fields are placeholders, secrets redacted,
    control characters dropped, whitespace collapsed, at most ``limit`` characters."""
    text = redact(_CONTROL.sub(" ", line), secrets)
    for pattern, placeholder in _FIELDS:
        text = pattern.sub(placeholder, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name(value: str, kind: str = "name") -> str:
    """A process or program name kept only when it is a plain name; else ``<kind>``."""
    return value if _NAME.fullmatch(value) else f"<{kind}>"


def unit(value: str) -> str:
    """A systemd unit name kept only when it is one; else ``<unit>``."""
    return value if _UNIT.fullmatch(value) else "<unit>"


def label(value: str) -> str:
    """A label or annotation value kept only when it is a plain token (host:port, a unit, a
    path); free text, which may carry instructions, becomes ``<text>``."""
    return value if _LABEL_VALUE.fullmatch(value) else "<text>"


def subject(value: str) -> str:
    """An incident's subject ("unit=a.service", "mountpoint=/srv") with each value checked."""
    return ",".join(f"{k}={label(v)}" for k, _, v in
                    (part.partition("=") for part in value.split(",") if part))


def labels(mapping: Mapping[str, str], limit: int = 12) -> dict[str, str]:
    """Labels (or annotations) with names and values checked; at most ``limit`` of them."""
    out: dict[str, str] = {}
    for key in sorted(mapping)[:limit]:
        if _LABEL_NAME.fullmatch(key):
            out[key] = label(str(mapping[key]))
    return out


def dedupe(lines: Iterable[str], limit: int) -> list[str]:
    """Templated lines, identical ones counted once ("… (x3)"), first seen first, at most
    ``limit``; the last line says how many were left out."""
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    out = [f"{line} (x{n})" if n > 1 else line for line, n in counts.items()]
    if len(out) > limit:
        left = len(out) - (limit - 1)
        out = [*out[: limit - 1], f"… {left} more distinct lines left out"]
    return out
