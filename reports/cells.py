"""Small-cell suppression: how the report shows a count of patients or studies.

Why: hospital data-release rules forbid publishing counts of 1 to 10 people (a threshold the
run config sets; 0 turns it off), and equally any figure printed beside its denominator that
lets a reader work such a count out: 3 of 120 shown as 2.5%, or 118 of 120 whose complement
is 2. Every patient count in the report goes through `SmallCells`; a suppressed count reads
"<11", a share that would reveal one reads as a bound ("<9.2%", ">90.8%"), and its sort
key is the bound, so the page's data attributes carry no exact value either. Zero is not
suppressed (no person is described by it). Artifacts keep the exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports.templates import DASH, esc, fixed2, integer, missing, pct, sort_value

SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class SmallCells:
    threshold: int = 10  # counts 1..threshold are suppressed; 0: off

    @property
    def limit(self) -> int:
        return self.threshold + 1

    @property
    def active(self) -> bool:
        return self.threshold > 0

    def hidden(self, n: Any) -> bool:
        """True for a count this report must not show (1..threshold)."""
        return self.active and not missing(n) and 1 <= round(float(n)) <= self.threshold

    def plain(self, n: Any) -> str:
        """A patient/study count as plain text: '1,234', '0', '<11' or '–' (not HTML-escaped)."""
        if missing(n):
            return DASH
        return f"<{self.limit}" if self.hidden(n) else integer(n)

    def count(self, n: Any) -> str:
        """A patient/study count as HTML, marked class "n" (the browser test reads them all)."""
        return DASH if missing(n) else f'<span class="n">{esc(self.plain(n))}</span>'

    def count_v(self, n: Any) -> str:
        """Sort key of a count cell: a suppressed one sorts as the threshold."""
        return str(self.threshold) if self.hidden(n) else sort_value(n)

    def part_plain(self, k: Any, whole: Any) -> str:
        """k out of `whole`, shown without the whole (e.g. exposed cases next to the exposed
        count), as plain text: suppressed when k or whole - k is small, as either reveals
        the other ('>89' when 90..99 of 100)."""
        if missing(k) or missing(whole) or self.hidden(k) or self.hidden(whole):
            return self.plain(k)
        if not self.hidden(float(whole) - float(k)):
            return self.plain(k)
        return f">{integer(float(whole) - self.limit)}"

    def part(self, k: Any, whole: Any) -> str:
        return DASH if missing(k) else f'<span class="n">{esc(self.part_plain(k, whole))}</span>'

    def fraction(self, k: Any, n: Any) -> str:
        """'43/50', with k bounded when k or n - k is small: '<11/50', '>39/50'."""
        if missing(k) or missing(n):
            return DASH
        return f"{self.part(k, n)}/{self.count(n)}"

    def share(self, k: Any, n: Any, p: Any = None) -> tuple[str, str]:
        """(text, sort key) of the percentage k/n (or `p` when given and counts missing)."""
        if missing(k) or missing(n):
            return pct(p), sort_value(p)
        if float(n) == 0:
            return DASH, ""
        exact = float(k) / float(n)
        if not self.reveals(k, n):
            return pct(exact), sort_value(exact)
        if self.hidden(n):
            return f'<span class="muted">{SUPPRESSED}</span>', ""
        if self.hidden(k):
            bound = self.limit / float(n)
            return f"&lt;{pct(bound)}", sort_value(bound)
        bound = 1.0 - self.limit / float(n)
        return f"&gt;{pct(bound)}", sort_value(bound)

    def score(self, value: Any, counts: tuple[Any, ...]) -> str:
        """A score made from counts (balanced accuracy): two decimals, one decimal when any
        of `counts` (pairs k, n flattened) is suppressed, so it cannot be solved back."""
        if missing(value):
            return DASH
        pairs = list(zip(counts[::2], counts[1::2], strict=True))
        if any(self.reveals(k, n) for k, n in pairs):
            return f"≈{float(value):.1f}"
        return fixed2(value)

    def reveals(self, k: Any, n: Any) -> bool:
        """Whether k and n shown together would disclose a small count (k, n - k or n)."""
        if missing(k) or missing(n):
            return False
        return self.hidden(k) or self.hidden(float(n) - float(k)) or self.hidden(n)
