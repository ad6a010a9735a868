"""What report text may look like before it is sent to an endpoint: cut to a length and,
by default, with the identifiers that de-identification commonly misses removed (dates,
times, long numbers such as record or accession numbers, e-mail addresses, phone numbers,
"Dr. Name"). Clinical content stays: sizes ("1.5 cm"), levels ("T11"), sides.
"""

from __future__ import annotations

import re

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_PATTERNS = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b"), "[date]"),
    (re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{2,4}})?\b", re.IGNORECASE), "[date]"),
    (re.compile(rf"\b\d{{1,2}}\s+{_MONTHS}(?:\s+\d{{2,4}})?\b", re.IGNORECASE), "[date]"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?", re.IGNORECASE), "[time]"),
    (re.compile(r"(?:\+?\d{1,2}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b"), "[phone]"),
    (re.compile(r"\b\d{5,}\b"), "[number]"),
    (re.compile(r"\b(Drs?\.?|Doctor)\s+[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?"), r"\1 [name]"),
]


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def prepare_report(text: str, max_chars: int, do_redact: bool) -> str:
    """The text that may leave the machine: redacted (optional), whitespace collapsed and
    cut at a word boundary to at most `max_chars` characters ("..." marks a cut)."""
    t = redact(text) if do_redact else text
    t = " ".join(t.split())
    if len(t) <= max_chars:
        return t
    cut = t[: max_chars - 3]
    if " " in cut[max_chars // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut + "..."
