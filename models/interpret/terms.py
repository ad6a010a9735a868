"""Negation-aware term extraction from radiology reports.

Reports state absent findings as often as present ones ("no pleural effusion"), so a
bag of words would count "no cirrhosis" as evidence for "cirrhosis". Here words inside a
NegEx-style negation scope become negated terms, rendered "no <term>", which can never
be confused with the positive finding.

Rules (deterministic, no model):
- lower-case words; numbers, units and a small list of function words are dropped and
  break phrases; clinically meaningful words (left, small, severe, new, normal, ...) stay;
- phrases of 1 to 3 adjacent kept words; no bigram across a sentence or clause
  boundary (. ! ? ; : newline , parentheses) or across a negation-polarity change;
- negation triggers open a scope that ends at a sentence end, ';', ':' or a termination
  word ("but", "however", "although", ...); post-triggers ("absent", "not seen",
  "ruled out") negate the words before them in the same scope; pseudo-triggers
  ("no change", "not only") are not negations;
- de-identification placeholders ("XXXX") are removed words: they break phrases;
- section headers ("FINDINGS:", "IMPRESSION:", any all-caps run before a colon) are not terms;
- each term counts once per document (a set is returned).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from models.interpret.vocab import STOP_WORDS

NEG_PREFIX = "no "
MAX_NGRAM = 3  # "small pleural effusion", "no focal consolidation": phrases, not words

_KNOWN_HEADERS = frozenset(
    (
        "findings",
        "impression",
        "history",
        "clinical history",
        "indication",
        "indications",
        "technique",
        "comparison",
        "comparisons",
        "conclusion",
        "conclusions",
        "exam",
        "examination",
        "procedure",
        "reason",
        "reason for exam",
        "clinical information",
        "clinical indication",
        "report",
        "result",
        "results",
        "recommendation",
        "recommendations",
        "addendum",
        "note",
    )
)

_HEADER_RE = re.compile(r"(?m)(^|(?<=[\n.;]))[ \t]*([A-Za-z][A-Za-z /&()-]{0,40}?)[ \t]*:")

_STOP = STOP_WORDS

_PRE = (
    "no",
    "not",
    "without",
    "negative for",
    "no evidence of",
    "no signs of",
    "no sign of",
    "without evidence of",
    "free of",
    "absence of",
    "absent",
    "nor",
    "neither",
    "never",
    "rule out",
    "rules out",
    "to rule out",
    "cannot be identified",
    # more NegEx pre-triggers (Chapman et al. 2001 and its radiology extensions)
    "clear of",
    "with no",
    "without any evidence of",
    "no findings of",
    "no radiographic evidence of",
    "not demonstrate",
    "does not demonstrate",
    "not appear",
    "fails to reveal",
    "unremarkable for",
    "resolution of",
)
_POST = (
    "absent",
    "not seen",
    "not identified",
    "not visualized",
    "not visualised",
    "not present",
    "not evident",
    "not demonstrated",
    "ruled out",
    "excluded",
    "is negative",
    "are negative",
)
_PSEUDO = (
    "no change",
    "no significant change",
    "no interval change",
    "no significant interval change",
    "no increase",
    "no further",
    "not only",
    "not necessarily",
    "gram negative",
    "not certain whether",
)
_TERMINATE = (
    "but",
    "however",
    "although",
    "though",
    "except",
    "aside from",
    "apart from",
    "yet",
    "whereas",
    "nevertheless",
    "which",
)


def _phrase_table() -> dict[str, list[tuple[tuple[str, ...], frozenset[str]]]]:
    """First word -> [(phrase words, kinds)], longest phrase first, for greedy matching."""
    kinds: dict[tuple[str, ...], set[str]] = {}
    groups = (("pre", _PRE), ("post", _POST), ("pseudo", _PSEUDO), ("term", _TERMINATE))
    for kind, phrases in groups:
        for p in phrases:
            kinds.setdefault(tuple(p.split()), set()).add(kind)
    table: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = {}
    for words, ks in kinds.items():
        table.setdefault(words[0], []).append((words, frozenset(ks)))
    for entries in table.values():
        entries.sort(key=lambda e: -len(e[0]))
    return table


_TRIGGERS = _phrase_table()
_TRIGGER_WORDS = frozenset(_TRIGGERS)
_TOKEN_RE = re.compile(r"[a-z][a-z0-9]*(?:['-][a-z0-9]+)*|\d+(?:\.\d+)?|[.!?;:\n,()\[\]]")
_HARD = frozenset(".!?;:\n")
_DEID = re.compile(r"x{3,}")  # de-identification placeholder ("XXXX"): a removed word
_BREAKS = frozenset(",()[]") | _STOP  # tokens that are not terms and end a phrase
_NONE: frozenset[str] = frozenset()


def _strip_headers(text: str) -> str:
    """Replace section headers (and their colon) by a sentence break."""

    def repl(m: re.Match[str]) -> str:
        head = m.group(2).strip()
        low = " ".join(head.lower().split())
        is_header = (head.isupper() and len(head) > 1) or low in _KNOWN_HEADERS
        return m.group(1) + "\n" if is_header else m.group(0)

    return _HEADER_RE.sub(repl, text)


def _match(tokens: list[str], i: int) -> tuple[int, frozenset[str]]:
    """Length and kinds of the longest trigger phrase starting at token i (0 if none)."""
    for words, kinds in _TRIGGERS.get(tokens[i], ()):
        n = len(words)
        if tuple(tokens[i : i + n]) == words:
            return n, kinds
    return 0, frozenset()


def _is_break(tok: str) -> bool:
    """Stop words, punctuation, numbers, single letters and de-identification tokens."""
    return tok in _BREAKS or len(tok) < 2 or not tok[0].isalpha() or _DEID.fullmatch(tok) is not None


def _clause_words(tokens: list[str]) -> list[tuple[str, bool] | None]:
    """Words of one hard clause with their negation flag; None marks a phrase break."""
    if _TRIGGER_WORDS.isdisjoint(tokens):  # fast path: most clauses hold no trigger
        return [None if _is_break(t) else (t, False) for t in tokens]
    out: list[tuple[str, bool] | None] = []
    negated = False
    scope_start = 0  # index in `out` where the current negation scope began
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        n, kinds = _match(tokens, i) if tok in _TRIGGERS else (0, _NONE)
        if n:
            if "post" in kinds and any(x is not None for x in out[scope_start:]):
                out[scope_start:] = [None if x is None else (x[0], True) for x in out[scope_start:]]
                negated = False
            elif "pre" in kinds:
                negated = True
            elif "term" in kinds:
                negated = False
            out.append(None)
            scope_start = len(out)
            i += n
            continue
        if _is_break(tok):
            out.append(None)
        else:
            out.append((tok, negated))
        i += 1
    return out


def _terms_of(words: list[tuple[str, bool] | None], out: set[str]) -> None:
    """Add 1- to MAX_NGRAM-word phrases of adjacent same-polarity words to `out`."""
    run: list[str] = []
    polarity = False
    for w in [*words, None]:
        if w is None or (run and w[1] != polarity):
            _add_ngrams(run, polarity, out)
            run = []
        if w is not None:
            run.append(w[0])
            polarity = w[1]


def _add_ngrams(run: list[str], negated: bool, out: set[str]) -> None:
    prefix = NEG_PREFIX if negated else ""
    for n in range(1, MAX_NGRAM + 1):
        for i in range(len(run) - n + 1):
            out.add(prefix + " ".join(run[i : i + n]))


def _clauses(text: str) -> Iterable[list[str]]:
    """Token lists between hard boundaries (sentence end, ';', ':', newline)."""
    clause: list[str] = []
    for tok in _TOKEN_RE.findall(_strip_headers(text).lower()):
        if tok in _HARD:
            if clause:
                yield clause
            clause = []
        else:
            clause.append(tok)
    if clause:
        yield clause


def extract_terms(text: str | None) -> set[str]:
    """The set of (possibly negated) unigram and bigram terms of one report."""
    out: set[str] = set()
    if not text or not isinstance(text, str):
        return out
    for clause in _clauses(text):
        _terms_of(_clause_words(clause), out)
    return out


def term_words(term: str) -> tuple[bool, tuple[str, ...]]:
    """(negated, words) of a rendered term, e.g. "no pleural effusion" -> (True, (...))."""
    if term.startswith(NEG_PREFIX):
        return True, tuple(term[len(NEG_PREFIX) :].split())
    return False, tuple(term.split())
