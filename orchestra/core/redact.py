"""Secret masking: credentials never reach a state file, an event log, a screen or a model.

Two ways a secret is recognised. By shape: Anthropic keys, `NAME_KEY=...`-style
assignments and bearer tokens. By value: the values of the secret-looking variables
in the scheduler's environment (an agent may echo one without its name). Those values
are captured once, by the process that starts agents, and reach readers only as
salted fingerprints, so `orchestra logs` in a shell without the variable still hides
the token, and no secret is ever written down to make that possible.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Each shape with the literal text it cannot match without: a plain substring test skips the regex
# for the megabytes of tool output that hold none (a raw transcript is masked a MiB at a time).
_SHAPES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    # Anthropic keys (api03, admin01, oat01 OAuth tokens, ...).
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}"), "sk-ant-***", ("sk-ant-",)),
    # Environment-style assignments of credentials: FOO_API_KEY=..., "X_TOKEN": "...".
    # A value starting with "$" is a reference, not a secret, so it stays visible.
    (
        re.compile(
            r"\b([A-Z][A-Z0-9_]*(?:_KEY|_TOKEN|_SECRET|_PASSWORD))"
            r"([\"']?\s*[=:]\s*[\"']?)"
            r"(?!\$)([^\s\"',;]{8,})"
        ),
        r"\1\2***",
        ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD"),
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]{16,}=*"), r"\1***", ("(i)bearer",)),
)

SECRET_NAME = re.compile(r"(?:^ANTHROPIC_API_KEY|^ANTHROPIC_AUTH_TOKEN|_KEY|_TOKEN|_SECRET|_PASSWORD|_PASSWD)$")
MIN_SECRET_LENGTH = 8
# Where a secret may start or end inside a run of non-space text: punctuation that joins it to other
# text (`https://user:TOKEN@host`, `"KEY=TOKEN."`). A secret may itself contain these characters.
_JOINERS = re.compile(r"[=:/@.,;!?#&%+*~$^|_-]")
# Quotes and brackets end a run. When a fingerprinted value holds one ("wide" fingerprints), the runs
# where such a character sits inside a word (`pa"ss`, `pa\\"ss`; JSON's own quotes never do) are looked
# at again with them as joiners: scanning all text that way costs several times more.
_WIDE = "\"'`<>()[]{}"
_WIDE_JOINERS = re.compile(r"[=:/@.,;!?#&%+*~$^|_\-\"'`<>()\[\]{}]")
_WORD = r"[^\s\"'`<>()\[\]{}=:/@.,;!?#&%+*~$^|_\-\\]"
_FLANKED = re.compile(_WORD + r"\\?[\"'`<>()\[\]{}]" + _WORD)
_ESCAPES = re.compile(r"\\(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)")
MASK = "***"


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of an environment's secret-looking variables, longest first, each also as JSON writes
    it: a transcript holds `pa\\"ss` for `pa"ss`, and that must be masked as well."""
    found: set[str] = set()
    for k, v in env.items():
        if SECRET_NAME.search(k.upper()) and len(v) >= MIN_SECRET_LENGTH:
            found.update((v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]))
    return sorted(found, key=len, reverse=True)


class Redactor:
    """Masks by shape, by known values, and by fingerprints of values this process never saw."""

    def __init__(self, values: Iterable[str] = (), fingerprints: Mapping[str, Any] | None = None) -> None:
        self.values = tuple(sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True))
        self.salt = ""
        self.hashes: dict[int, frozenset[str]] = {}
        if fingerprints:
            self.salt = str(fingerprints.get("salt") or "")
            raw = fingerprints.get("hashes") or {}
            if isinstance(raw, dict):
                self.hashes = {
                    int(length): frozenset(str(h) for h in hs)
                    for length, hs in raw.items()
                    if str(length).isdigit() and isinstance(hs, list) and int(length) >= MIN_SECRET_LENGTH
                }
        self._lengths = sorted(self.hashes)
        self._longest_first = self._lengths[::-1]
        self._salt_state: Any = None
        # Runs of text a fingerprinted value could hide in: no whitespace, and no quotes or brackets unless
        # a value holds one.
        shortest = self._lengths[0] if self._lengths else MIN_SECRET_LENGTH
        self._wide = bool(fingerprints and fingerprints.get("wide"))
        self._runs = re.compile(r"[^\s\"'`<>()\[\]{}]" + "{" + str(shortest) + ",}")
        self._wide_runs = re.compile(r"\S" + "{" + str(shortest) + ",}")

    def mask(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        if self.hashes:
            text = self._runs.sub(lambda m: self._mask_run(m.group(0), _JOINERS), text)
            if self._wide and _FLANKED.search(text):
                text = self._wide_runs.sub(self._mask_wide_run, text)
        lowered: str | None = None
        for pattern, replacement, needs in _SHAPES:
            for need in needs:
                if need.startswith("(i)"):
                    lowered = text.lower() if lowered is None else lowered
                    found = need[3:] in lowered
                else:
                    found = need in text
                if found:
                    text = pattern.sub(replacement, text)
                    lowered = None
                    break
        return text

    def mask_data(self, value: Any) -> Any:
        """mask() over every string in a JSON-like value (keys included)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_data(v) for v in value]
        if isinstance(value, dict):
            return {self.mask(k) if isinstance(k, str) else k: self.mask_data(v) for k, v in value.items()}
        return value

    def _mask_wide_run(self, m: re.Match[str]) -> str:
        run = m.group(0)
        return self._mask_run(run, _WIDE_JOINERS) if _FLANKED.search(run) else run

    def _mask_run(self, run: str, joiners: re.Pattern[str]) -> str:
        """Every stretch of the run between two joins (or its ends) whose length and hash are a known secret's."""
        cuts = {0, len(run)}
        for j in joiners.finditer(run):
            cuts.add(j.start())
            cuts.add(j.end())
        if "\\" in run:  # JSON or C escapes (raw transcripts): `\nTOKEN` holds TOKEN after the escape
            for j in _ESCAPES.finditer(run):
                cuts.update((j.start(), j.start() + 1, j.end()))  # `\\s` may be an escape or a path separator
        found: list[tuple[int, int]] = []
        salted, hashes, lengths = self._salted(), self.hashes, self._longest_first
        for start in sorted(cuts):
            if found and start < found[-1][1]:
                continue
            for length in lengths:  # the longest match first
                end = start + length
                if end in cuts:
                    h = salted.copy()
                    h.update(run[start:end].encode("utf-8", "surrogatepass"))
                    if h.hexdigest()[:32] in hashes[length]:
                        found.append((start, end))
                        break
        if not found:
            return run
        out, pos = [], 0
        for start, end in found:
            out.append(run[pos:start])
            out.append(MASK)
            pos = end
        out.append(run[pos:])
        return "".join(out)

    def _salted(self) -> Any:
        """sha256 fed the salt: each candidate's hash starts from a copy of it."""
        if self._salt_state is None:
            import hashlib  # loads OpenSSL, ~3 ms: only masking with stored fingerprints pays

            self._salt_state = hashlib.sha256(self.salt.encode("utf-8", "surrogatepass"))
        return self._salt_state


def _digest(salt: str, value: str) -> str:
    import hashlib  # loads OpenSSL, ~3 ms: only masking with stored fingerprints pays

    return hashlib.sha256((salt + value).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def fingerprints(values: Iterable[str], salt: str | None = None) -> dict[str, Any]:
    """What a reader needs to recognise these values, without the values themselves."""
    salt = salt or os.urandom(16).hex()
    hashes: dict[str, list[str]] = {}
    wide = False
    for v in values:
        if len(v) >= MIN_SECRET_LENGTH:
            hashes.setdefault(str(len(v)), []).append(_digest(salt, v))
            wide = wide or any(c in v for c in _WIDE)
    return {"salt": salt, "hashes": {k: sorted(set(h)) for k, h in hashes.items()}, "wide": wide}


def merge_fingerprints(old: Mapping[str, Any] | None, values: Iterable[str]) -> dict[str, Any]:
    """Add values to an existing fingerprint set, keeping its salt (secrets rotate; old logs stay masked)."""
    if not old or not isinstance(old.get("salt"), str):
        return fingerprints(values)
    return merge_hashes(old, fingerprints(values, old["salt"]))


def merge_hashes(old: Mapping[str, Any], new: object) -> dict[str, Any]:
    """Add fingerprints made with `old`'s salt (by another machine, from values never sent here)."""
    merged: dict[str, set[str]] = {}
    wide = bool(old.get("wide"))
    for source in (old, new):
        if not isinstance(source, Mapping):
            continue
        wide = wide or source.get("wide") is True
        hashes = source.get("hashes")
        if isinstance(hashes, dict):
            for length, hs in hashes.items():
                if str(length).isdigit() and int(length) >= MIN_SECRET_LENGTH and isinstance(hs, list):
                    merged.setdefault(str(length), set()).update(str(h) for h in hs)
    return {"salt": old.get("salt"), "hashes": {k: sorted(v) for k, v in merged.items()}, "wide": wide}


_default = Redactor(secret_values(os.environ))


def install(redactor: Redactor) -> None:
    """The redactor mask_secrets uses in this process (set once the fingerprints are known)."""
    global _default
    _default = redactor


def current() -> Redactor:
    return _default


def mask_secrets(text: str) -> str:
    """Hide credentials that tools or the model may echo before anyone sees them."""
    return _default.mask(text)


def mask_data(value: Any) -> Any:
    return _default.mask_data(value)


def dumps_masked(value: Any) -> str:
    return json.dumps(mask_data(value), default=str)
