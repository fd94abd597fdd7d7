"""The rewrite check: is x' a rewrite of the query x, or something the generator must not see?

Nothing in the paper's objective prefers an x' that rewrites over one that answers: the CMA-ES
fitness F(ξ) = CE(y | x') (Eq. 11) falls when x' carries content of the preferred answer y, and
both ∇e^b (Eq. 13) and the KL to q_im (Eq. 12) pull p_im towards writing y. `check` tells the
cases apart with text features alone (no LLM call, microseconds per pair), so that it can run on
every candidate inside the CMA-ES fitness, on every pseudo-label x* and at inference.

Verdicts, as in the hand labels of ../shared/data/rewrite-labels/ (see its README):

- ``copy``: equal to x after lower-casing and removing punctuation and whitespace.
- ``degenerate``: empty, a loop, meta-chatter about the task ("I'm glad you're interested in
  improving this query"), or the refiner's own prompt echoed.
- ``answers``: answers, or starts answering, x instead of rewriting it.
- ``drift``: a query, but the request form, a sentence, a quoted item or a number of x was lost,
  or little of x's content is left.
- ``rewrite``: none of the above.

A usable query wrapped in a preamble ("Sure, here's a modified query: "...""), which the labels
judge by the query inside, is unwrapped first (`extract_query`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from recast.refiner import query

Verdict = Literal["rewrite", "copy", "answers", "drift", "degenerate"]
VERDICTS: tuple[Verdict, ...] = ("rewrite", "copy", "answers", "drift", "degenerate")
HARMFUL: frozenset[str] = frozenset({"answers", "drift", "degenerate"})


@dataclass(frozen=True)
class Check:
    """The check's verdict on one x' and the reason for it (one line, for logs and the CLI)."""

    verdict: Verdict
    reason: str

    @property
    def harmful(self) -> bool:
        """x' must not reach the generator in place of x (answers, drift or degenerate)."""
        return self.verdict in HARMFUL


@dataclass(frozen=True)
class CheckParams:
    """Thresholds of the check, tuned on the bpo_test rows of the labelled rewrites only."""

    ngram: int = 4
    """n of the word n-grams whose repetition marks a loop."""
    max_repeat_share: float = 0.3
    """A loop: more than this share of x''s word n-grams repeat an earlier one (beyond x's own
    share), counted only when x' has at least `min_loop_words` words."""
    min_loop_words: int = 16
    """Shorter x' are not judged for loops (too few n-grams to tell)."""
    max_extra_statement_words: int = 25
    """Answers: x' has this many more words in statements (sentences that neither ask nor
    request) than x has; a rewrite restates x's request, it does not add a paragraph."""
    max_new_statement_content: int = 4
    """Answers: x''s statements hold more than this many content words that x lacks (new
    material stated, not asked for: the labelled rewrites hold at most 3)."""
    answer_new_words: int = 4
    """When x asks or requests and x' does neither, x' with at least this many content words
    that x lacks is an answer, fewer a drift (x restated as a statement)."""
    min_kept: float = 0.5
    """Drift: fewer than this share of x's content words (stemmed) are found in x'."""
    min_sentence_kept: float = 0.34
    """Drift: one of x's sentences (x having several) with at least `sentence_words` content
    words keeps fewer than this share of them in x' (a dropped constraint or question)."""
    sentence_words: int = 3
    """Sentences with fewer content words are not judged on their own."""
    min_similarity: float = 0.8
    """Drift (with an encoder): the cosine of the MiniLM embeddings of x and x' is below this
    (x' asks about something else: "what is the Adam" -> "What is the Adam optimizer?")."""
    forgive_similarity: float = 0.85
    """With an encoder, a low share of kept words (`min_kept`) is forgiven at this cosine or
    above: synonyms ("old people" -> "elderly individuals") keep the meaning, not the words."""


DEFAULT = CheckParams()


# -- text helpers -------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """The labels' copy key: lower-cased, punctuation and whitespace removed (NFKC first, so a
    non-breaking space and a space are the same nothing)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in text if c.isalnum())


_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _wordset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each every few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just let me might more most must my myself no nor not now of off on once only or
    other our ours ourselves out over own please same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself
    yourselves hey i'm i'd i'll i've you're it's that's what's don't can't isn't also may shall
    then one's okay ok tell"""
)

INTERROGATIVES = _wordset(
    """what why how when where who whom whose which is are was were do does did can could would
    should will shall may might have has had am"""
)

# Verbs that open a request; a sentence starting with one (after "please", "now", ...) asks.
REQUEST_VERBS = _wordset(
    """act analyze analyse answer arrange assess brainstorm build calculate categorize change
    check choose classify compare compose construct convert correct count create debug define
    describe design detail determine develop devise discuss draft draw edit elaborate estimate
    evaluate explain expand explore extract fill filter find fix format formulate generate give
    guess help identify illustrate imagine implement improve include indicate infer investigate
    justify label list locate make match name note offer optimize order organize outline
    paraphrase pick plan predict prepare present pretend produce propose provide rank rate
    recommend reformulate remove rephrase replace research respond restate return review rewrite
    say select share show simplify solve sort specify state suggest summarise summarize support
    take teach tell think transform translate try use verify walk write"""
)
# A sentence that directs the answer ("Your explanation should ...") asks, though declarative.
_DIRECTIVE = re.compile(
    r"\b(it|this|the (answer|response|explanation|reply|output|result)|your (answer|response|"
    r"explanation|reply)) (should|must|need to|needs to|has to|have to)\b",
    re.IGNORECASE,
)
# A question back to the user ("What kind of show do you like?"): the assistant's side of a chat.
_ASKS_BACK = re.compile(
    r"\b(do|are|did|have|were) you\b|\byou (like|prefer|want|mean|enjoy)\b|"
    r"\b(are|were) you (interested|looking|thinking)\b",
    re.IGNORECASE,
)
_LEADERS = frozenset({"please", "now", "kindly", "also", "then", "so", "and", "hey", "hi", "ok"})
_REQUEST_PHRASES = re.compile(
    r"\b(can|could|would|will) (you|someone)\b|\bi (need|want|would like|'d like)\b|"
    r"\bhelp me\b|\bi need help\b|\bi'm looking for\b|\bplease\b",
    re.IGNORECASE,
)

# The refiner talking about its task instead of doing it (Table 1's prompt leaks into x').
_META = re.compile(
    r"\b(i'?m|i am) (here to|designed to|glad|sorry|not (sure|capable|able|equipped))|"
    r"\bplease provide (me )?(with )?(the|your)\b|"
    r"\b(improv|modif|refin|rewrit|revis)\w* (the|this|your|a) (query|prompt)\b|"
    r"\b(original|revised|modified|simplified) (version of (your|the) )?query\b|"
    r"\bmore helpful and (harmless|non-intrusive)|"
    r"\bas an? (prompt engineer|ai\b|language model|[\w-]+ ai\b)|"
    r"\bprompt engineer\b|"
    r"\bwhat can i (assist|help) you with\b|"
    r"\bi'?ll (follow these steps|do my best)",
    re.IGNORECASE,
)
# Table 1's own words: x' that repeats them echoes the prompt, not the query.
_ECHO = re.compile(
    r"expert prompt engineer|output the modified query only|form the judgment upon",
    re.IGNORECASE,
)
# How answers open: a reply to the user, or an announced solution.
_ANSWER_OPENER = re.compile(
    r"^(sure|certainly|of course|absolutely|yes|no|great|awesome|indeed|"
    r"what an? (delightful|great|interesting|fascinating|good) question|"
    r"i'?d be (happy|glad)|i can help|i'?m happy|happy to help|"
    r"here'?s|here is|below is|the answer)\b",
    re.IGNORECASE,
)
# Answer moves anywhere in x' (only counted where x does not contain them itself).
_ANSWER_MOVES = re.compile(
    r"\bto answer (this|the|your)( following)? question\b|"
    r"\bwe need to (consider|determine|calculate|estimate|know|find)\b|"
    r"\bi'?ll need to (consider|determine|calculate|estimate|know|find)\b|"
    r"\bthe answer (to (this|the|your) (query|question)[^.\n]{0,60} )?is\b|"
    r"\bstep 1\b|\blet'?s break (this|it) down\b|"
    r"^to (determine|calculate|estimate|find out|solve|center|answer)\b|"
    r"\byou can use\b|```",
    re.IGNORECASE | re.MULTILINE,
)
# A first line that announces a query, then the query itself in quotes on the next line(s).
_WRAPPER = re.compile(
    r"\A[^\n]*\b(query|prompt|question|request)\b[^\n]*:\s*\n?\s*[\"“](?P<q>[^\"”\n]+)[\"”]?",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“]([^\"”]{1,400})[\"”]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def words(text: str) -> list[str]:
    return [w.casefold().replace("’", "'") for w in _WORD.findall(text)]


def stem(word: str) -> str:
    """A crude suffix strip: enough to match apple/apples, strike/strikes, asked/asking."""
    if word.endswith("ss"):
        return word
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("s", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + repl
    return word


def content(text: str) -> list[str]:
    """Stemmed content words (stop words and request verbs left out: they are form, not
    content)."""
    return [
        stem(w) for w in words(text) if w not in STOPWORDS and w not in REQUEST_VERBS and len(w) > 1
    ]


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if p and p.strip()]


def asks(sentence: str) -> bool:
    """The sentence asks a question or makes a request (its form, not its content)."""
    s = sentence.strip()
    if "?" in s or _REQUEST_PHRASES.search(s) or _DIRECTIVE.search(s):
        return True
    ws = words(s)
    while ws and ws[0] in _LEADERS:
        ws = ws[1:]
    return bool(ws) and (ws[0] in INTERROGATIVES or ws[0] in REQUEST_VERBS)


def extract_query(x_prime: str) -> str:
    """The query inside a preamble ("Sure, here's a modified query: "..."" -> the quoted part),
    else x' itself stripped. The labels judge a wrapped x' by the query inside; the generator
    should see only that query."""
    m = _WRAPPER.search(x_prime)
    if m and len(m.group("q").split()) >= 2:
        return m.group("q").strip()
    return x_prime.strip()


def _tail(x: str, q: str) -> str:
    """What q adds after its first len(x) alphanumeric characters (q extends x verbatim)."""
    need, i = len(normalize(x)), 0
    while need > 0 and i < len(q):
        need -= len(normalize(q[i]))
        i += 1
    return q[i:]


def repeat_share(ws: list[str], n: int) -> float:
    """Share of word n-grams that repeat an earlier n-gram (0: none; near 1: a loop)."""
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    if not grams:
        return 0.0
    return sum(c - 1 for c in Counter(grams).values()) / len(grams)


def _kept(source: list[str], target: set[str]) -> float:
    if not source:
        return 1.0
    return sum(_found(w, target) for w in source) / len(source)


def _found(word: str, target: set[str]) -> bool:
    # a shared 5-letter prefix also counts: advise/advice, explanation/explain
    return word in target or (len(word) >= 5 and any(t[:5] == word[:5] for t in target))


# -- the embedding similarity -------------------------------------------------------------------


class Encoder:
    """Sentence embeddings (mean-pooled, unit length, as all-MiniLM-L6-v2 is meant to be used),
    cached per text: inside the CMA-ES fitness the same x and many equal x' recur."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 256) -> None:
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.cache: dict[str, Any] = {}

    @classmethod
    def load(cls, spec: str) -> Encoder:
        from transformers import AutoModel, AutoTokenizer

        from recast.models.load import resolve

        path = resolve(spec).path
        model = AutoModel.from_pretrained(path).eval()
        return cls(model, AutoTokenizer.from_pretrained(path))

    def embed(self, texts: list[str]) -> None:
        """Embed the texts not cached yet, in one batch."""
        import torch

        todo = sorted({t for t in texts if t not in self.cache})
        if not todo:
            return
        if len(self.cache) > 50_000:  # a long search: keep memory bounded
            self.cache.clear()
        batch = self.tokenizer(
            todo, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        self.cache.update(zip(todo, vectors, strict=True))

    def similarity(self, a: str, b: str) -> float:
        """Cosine of the two texts' embeddings."""
        self.embed([a, b])
        return float(self.cache[a] @ self.cache[b])


@functools.lru_cache(maxsize=2)
def encoder(spec: str) -> Encoder:
    """The encoder for `spec` (a packaged alias such as minilm-l6, or a folder), loaded once per
    process."""
    return Encoder.load(spec)


def check_many(
    xs: list[str],
    x_primes: list[str],
    params: CheckParams = DEFAULT,
    encoder: Encoder | None = None,
) -> list[Check]:
    """`check` for many pairs, with their embeddings computed in one batch."""
    pairs = [compared(x, xp) for x, xp in zip(xs, x_primes, strict=True)]
    if encoder is not None:
        encoder.embed([*(x for x, _ in pairs), *(extract_query(xp) for _, xp in pairs)])
    return [check(x, xp, params, encoder) for x, xp in pairs]


def compared(x: str, x_prime: str) -> tuple[str, str]:
    """What the check compares: x's instruction and what replaced it, when x' ends with x's
    input verbatim (refiner.keep_input appends it: recast.refiner.query), else x and x'. The
    input is the same text on both sides; left in, it would hide a drifted instruction."""
    instruction, tail = query.split(x)
    rest = x_prime[: -len(tail)] if tail and x_prime.endswith(tail) else ""
    return (instruction, rest) if rest.strip() else (x, x_prime)


# -- the check ----------------------------------------------------------------------------------


def check(
    x: str, x_prime: str, params: CheckParams = DEFAULT, encoder: Encoder | None = None
) -> Check:
    """Verdict on x' as a rewrite of x; the first rule that fires decides (in this order).

    Without `encoder` the check is purely lexical (and misses a few more drifts, see
    scripts/check_rewrites.py --lexical); with it, the MiniLM cosine of x and x' also decides."""
    x, x_prime = compared(x, x_prime)
    if not x_prime.strip():
        return Check("degenerate", "x' is empty")
    if normalize(x) == normalize(x_prime):
        return Check("copy", "x' equals x up to case, punctuation and whitespace")
    if _ECHO.search(x_prime) and not _ECHO.search(x):
        return Check("degenerate", "x' echoes the refiner's prompt")
    q = extract_query(x_prime)
    if q != x_prime.strip() and normalize(q) == normalize(x):
        return Check("copy", "the quoted query in x' equals x")
    ws, xws = words(q), words(x)
    share, x_share = repeat_share(ws, params.ngram), repeat_share(xws, params.ngram)
    if len(ws) >= params.min_loop_words and share - x_share > params.max_repeat_share:
        return Check("degenerate", f"x' loops ({share:.0%} of its {params.ngram}-grams repeat)")
    m = _META.search(q)
    if m and not _META.search(x):
        return Check("degenerate", f"meta-chatter about the task: {m.group(0)!r}")
    m = _ANSWER_OPENER.search(q)
    if m and not _ANSWER_OPENER.search(x):
        return Check("answers", f"x' opens like an answer: {m.group(0)!r}")
    m = _ANSWER_MOVES.search(q)
    if m and not _ANSWER_MOVES.search(x):
        return Check("answers", f"x' starts answering: {m.group(0)!r}")
    nx, nq = normalize(x), normalize(q)
    if nx and nq.startswith(nx):  # x kept verbatim, then more: what was added?
        tail = _tail(x, q)
        said = [s for s in sentences(tail) if words(s) and (not asks(s) or _ASKS_BACK.search(s))]
        if said:
            return Check("answers", f"x' is x followed by a reply: {said[0][:40]!r}")
    x_content_set = set(content(x))
    new = [
        w for s in sentences(q) if not asks(s) for w in content(s) if not _found(w, x_content_set)
    ]
    if len(new) > params.max_new_statement_content:
        return Check("answers", f"x' states new material ({', '.join(sorted(set(new))[:6])})")
    statement_words = sum(len(words(s)) for s in sentences(q) if not asks(s))
    x_statement_words = sum(len(words(s)) for s in sentences(x) if not asks(s))
    extra = statement_words - x_statement_words
    if extra > params.max_extra_statement_words:
        return Check("answers", f"x' adds {extra} words of statements to x")
    x_content, q_content = content(x), set(content(q))
    if any(asks(s) for s in sentences(x)) and not any(asks(s) for s in sentences(q)):
        new = sorted({w for w in q_content if not _found(w, set(content(x)))})
        if len(new) >= params.answer_new_words:
            return Check("answers", f"x asks, x' states new content ({', '.join(new[:6])})")
        return Check("drift", "x asks or requests; x' neither asks nor requests")
    qn = normalize(q)
    for quoted in _QUOTED.findall(x):
        if normalize(quoted) and normalize(quoted) not in qn:
            return Check("drift", f"the quoted {quoted[:40]!r} of x is not kept verbatim")
    missing = sorted(set(_NUMBER.findall(x)) - set(_NUMBER.findall(q)))
    if missing:
        return Check("drift", f"x's number(s) {', '.join(missing)} are missing")
    added = sorted(set(_NUMBER.findall(q)) - set(_NUMBER.findall(x)))
    if added:
        return Check("drift", f"x' adds the number(s) {', '.join(added[:4])}")
    sim = encoder.similarity(x, q) if encoder is not None else None
    if sim is not None and sim < params.min_similarity:
        return Check("drift", f"x' means something else (cosine {sim:.2f} to x)")
    kept = _kept(x_content, q_content)
    if kept < params.min_kept and (sim is None or sim < params.forgive_similarity):
        return Check("drift", f"only {kept:.0%} of x's content words are kept")
    parts = sentences(x)
    for sentence in parts if len(parts) > 1 else []:  # one sentence: `min_kept` judges it
        own = content(sentence)
        if len(own) >= params.sentence_words:
            part = _kept(own, q_content)
            if part < params.min_sentence_kept:
                return Check("drift", f"x's sentence {sentence[:50]!r} is dropped ({part:.0%})")
    return Check("rewrite", "same request, content kept, phrased differently")


# -- validation against hand labels -------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """How the check's verdicts meet hand labels (see scripts/check_rewrites.py)."""

    matrix: dict[str, dict[str, int]]
    """matrix[label][verdict] = rows."""
    harmful_recall: float
    """Share of rows labelled answers/drift/degenerate that the check flags as harmful."""
    rewrite_flagged: float
    """Share of rows labelled rewrite that the check flags as harmful (nan: none labelled)."""
    copy_recall: float
    """Share of rows labelled copy whose verdict is copy (nan: none labelled)."""
    copy_precision: float
    """Share of copy verdicts whose label is copy (nan: no copy verdict)."""
    rows: int


def rates(pairs: list[tuple[str, Verdict]]) -> Rates:
    """Confusion matrix and rates from (label, verdict) pairs."""
    matrix = {label: dict.fromkeys(VERDICTS, 0) for label in VERDICTS}
    for label, verdict in pairs:
        matrix[label][verdict] += 1

    def share(hit: int, total: int) -> float:
        return hit / total if total else float("nan")

    harmful = [v for label, v in pairs if label in HARMFUL]
    rewrites = [v for label, v in pairs if label == "rewrite"]
    copies = [v for label, v in pairs if label == "copy"]
    copy_verdicts = [label for label, v in pairs if v == "copy"]
    return Rates(
        matrix=matrix,
        harmful_recall=share(sum(v in HARMFUL for v in harmful), len(harmful)),
        rewrite_flagged=share(sum(v in HARMFUL for v in rewrites), len(rewrites)),
        copy_recall=share(sum(v == "copy" for v in copies), len(copies)),
        copy_precision=share(sum(lab == "copy" for lab in copy_verdicts), len(copy_verdicts)),
        rows=len(pairs),
    )
