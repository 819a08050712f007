"""Property tests (hypothesis) for the input readers and the verdict parser:

- `read_exemplars` and `read_pairs` on arbitrary bytes (and on JSON-shaped data that is almost
  right) return only valid records, or raise `InputError` whose one-line message starts with
  the file's path: never any other exception;
- `parse_verdict` never raises, and returns either a valid verdict whose choice is the last
  line's [[X]] with scores agreeing, or no choice and a non-empty error.

Known crashes these strategies stay clear of (5000-digit numbers, 100k-deep nesting, lone
surrogate escapes, author keys holding a newline) are pinned down as xfail cases in
tests/test_bad_inputs.py, so these properties stay deterministic. Run with
`--hypothesis-show-statistics` to see how often each branch (accepted / refused, valid /
invalid) is reached.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from persrm_core.data.ingest import MAX_TEXT_CHARS, read_exemplars
from persrm_core.errors import InputError
from persrm_core.judging.judge_format import END_MARKERS, format_completion, parse_verdict
from persrm_core.records import LABELS, Exemplar, Pair, read_pairs

PROPS = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Text without surrogates or line-breaking characters (those are covered by explicit cases).
_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
plain_text = st.text(_chars, max_size=12)
small_str = st.one_of(st.sampled_from(["", " ", "ann", "bob", "A", "B", "C", "x\u0000y", "\t\n", "p1", "p2"]),
                      plain_text)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                        st.floats(allow_nan=True, allow_infinity=True), small_str)
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                                st.dictionaries(small_str, kids, max_size=3)),
                          max_leaves=8)


def _record(keys: list[str]) -> st.SearchStrategy[dict]:
    """A dict with some of `keys`, each mostly a plausible string, sometimes anything JSON."""
    value = st.one_of(small_str, small_str, json_value, st.lists(small_str, max_size=2))
    return st.dictionaries(st.sampled_from(keys + ["extra"]), value, max_size=len(keys) + 1)


def _lines(record: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    line = st.one_of(record.map(json.dumps), record.map(json.dumps), json_value.map(json.dumps),
                     st.sampled_from(["", "   ", "{", '{"author_id": "ann"', "[]", "null", "\ufeff{}"]),
                     plain_text)
    return st.lists(line, max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8"))


def _mutate_bytes(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Sometimes splice raw bytes (invalid UTF-8, NUL, CR) into otherwise structured data."""
    junk = st.sampled_from([b"\xff", b"\xe9", b"\x00", b"\r", b"\r\n", b"\xc3", b"\n\n", b"\xef\xbb\xbf"])

    @st.composite
    def spliced(draw):
        b = draw(data)
        for _ in range(draw(st.integers(0, 2))):
            i = draw(st.integers(0, len(b)))
            b = b[:i] + draw(junk) + b[i:]
        return b
    return spliced()


def _write(name: str, data: bytes):
    d = tempfile.TemporaryDirectory()
    path = Path(d.name) / name
    path.write_bytes(data)
    return d, path


def _check_input_error(exc: InputError, path: Path) -> None:
    msg = str(exc)
    assert msg.startswith(str(path)), msg
    assert exc.path == str(path)
    assert len(msg.splitlines()) == 1, msg
    assert exc.problem.strip()


# ---------------------------------------------------------------- (a) read_exemplars
EXEMPLAR_KEYS = ["author_id", "text", "source", "meta"]


def _break(rec: dict, keys: list[str], draw) -> dict:
    """Break 0-2 fields of a valid record: delete one, or give it another (JSON) value."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(keys + ["extra"]))
        if draw(st.booleans()) and key in rec:
            del rec[key]
        else:
            rec[key] = draw(st.one_of(small_str, json_value))
    return rec


@st.composite
def exemplar_rows(draw) -> bytes:
    """Valid exemplar rows (two authors, two texts each), then maybe broken, dropped or reordered."""
    rows = [{"author_id": a, "text": t} for a in ("ann", "bob") for t in ("First text.", "Second text.")]
    rows = [_break(r, EXEMPLAR_KEYS, draw) for r in draw(st.permutations(rows))]
    rows = rows[: draw(st.integers(0, len(rows)))] if draw(st.booleans()) else rows
    return "\n".join(json.dumps(r) for r in rows).encode("utf-8")


exemplar_jsonl = st.one_of(st.binary(max_size=200), _mutate_bytes(_lines(_record(EXEMPLAR_KEYS))),
                           _mutate_bytes(exemplar_rows()))


@st.composite
def grouped_authors(draw) -> dict:
    """Valid author-grouped JSON (two authors, two items each), then maybe broken."""
    obj: dict = {}
    for author in draw(st.lists(st.sampled_from(["ann", "bob", " carol ", " ", ""]), min_size=1, max_size=3,
                                unique=True)):
        items = [_break({"prompt": "Hi.", "output": f"Text {i}."}, ["prompt", "output"], draw) for i in range(2)]
        if draw(st.integers(0, 3)) == 0:  # now and then: one item only, or not a list at all
            items = draw(st.one_of(st.just(items[:1]), json_value))
        obj[author] = items
    return obj


item = st.one_of(st.fixed_dictionaries({"prompt": small_str, "output": small_str}),
                 _record(["prompt", "output"]), json_value)
author_key = st.one_of(st.sampled_from(["ann", "bob", " ", ""]), plain_text)
grouped = st.one_of(st.dictionaries(author_key, st.one_of(st.lists(item, max_size=4), json_value), max_size=3),
                    json_value, grouped_authors())


def _check_exemplars(path: Path) -> None:
    try:
        out = read_exemplars(path)
    except InputError as exc:
        _check_input_error(exc, path)
        event("refused")
        return
    event("accepted")
    assert out, "an empty result must be refused"
    for ex in out:
        assert isinstance(ex, Exemplar)
        assert isinstance(ex.author_id, str) and ex.author_id.strip() == ex.author_id and ex.author_id
        assert isinstance(ex.text, str) and ex.text.strip() == ex.text and ex.text
        assert "\x00" not in ex.text and len(ex.text) <= MAX_TEXT_CHARS
        assert isinstance(ex.meta, dict)
    counts: dict[str, int] = {}
    for ex in out:
        counts[ex.author_id] = counts.get(ex.author_id, 0) + 1
    assert min(counts.values()) >= 1  # a one-text author is accepted (min_texts_per_author defaults to 1)


@PROPS
@given(exemplar_jsonl)
def test_read_exemplars_jsonl_returns_valid_records_or_input_error(data: bytes):
    d, path = _write("ex.jsonl", data)
    with d:
        _check_exemplars(path)


@PROPS
@given(grouped, st.sampled_from(["dumps", "bytes"]), st.binary(max_size=3))
def test_read_exemplars_grouped_json_returns_valid_records_or_input_error(obj, how, tail):
    data = json.dumps(obj).encode("utf-8")
    if how == "bytes":  # corrupt the end: truncation or trailing junk
        data = data[: max(len(data) - len(tail), 0)] + tail
    d, path = _write("authors.json", data)
    with d:
        _check_exemplars(path)


# ---------------------------------------------------------------- (c) read_pairs
PAIR_KEYS = ["pair_id", "author_id", "exemplars", "prompt", "response_a", "response_b", "label", "negative_type"]


@st.composite
def pair_record(draw):
    """A pair that is valid, then maybe broken in one or two fields."""
    rec = {"pair_id": draw(st.sampled_from(["p1", "p2", "p3"])), "author_id": "ann",
           "exemplars": draw(st.lists(st.sampled_from(["Ann wrote this.", "Ann again."]), min_size=1, max_size=2)),
           "prompt": "Write.", "response_a": "One.", "response_b": "Two.", "label": draw(st.sampled_from(LABELS))}
    return _break(rec, PAIR_KEYS, draw)


pairs_jsonl = st.one_of(st.binary(max_size=200), _mutate_bytes(_lines(pair_record())))


@PROPS
@given(pairs_jsonl)
def test_read_pairs_returns_valid_pairs_or_input_error(data: bytes):
    d, path = _write("pairs.jsonl", data)
    with d:
        try:
            out = read_pairs(path)
        except InputError as exc:
            _check_input_error(exc, path)
            event("refused")
            return
    event("accepted")
    assert out
    assert len({p.pair_id for p in out}) == len(out)
    for p in out:
        assert isinstance(p, Pair) and p.label in LABELS
        for key in ("pair_id", "author_id", "prompt", "response_a", "response_b"):
            value = getattr(p, key)
            assert isinstance(value, str) and value.strip(), key
        assert p.exemplars and all(isinstance(e, str) and e.strip() for e in p.exemplars)
        assert p.negative_type is None or isinstance(p.negative_type, str)


# ---------------------------------------------------------------- (b) parse_verdict
VERDICT_LINE = re.compile(r"Verdict: \[\[(A|B)\]\]")
SCORES_LINE = re.compile(r"Scores: A=(\d{1,2}) B=(\d{1,2})")


def _closing_lines(output: str) -> list[str]:
    text = output
    while any(text.rstrip().endswith(m) for m in END_MARKERS):
        m = next(m for m in END_MARKERS if text.rstrip().endswith(m))
        text = text.rstrip()[: -len(m)]
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _check_verdict(output: str):
    v = parse_verdict(output)
    event("valid" if v.choice else "invalid")
    if v.choice is None:
        assert v.scores is None
        assert isinstance(v.error, str) and v.error.strip()
        return v
    assert v.error is None and v.choice in LABELS
    lines = _closing_lines(output)
    assert len(lines) >= 3
    last = VERDICT_LINE.fullmatch(lines[-1])
    assert last is not None and last.group(1) == v.choice, lines[-1]
    scores = SCORES_LINE.fullmatch(lines[-2])
    assert scores is not None, lines[-2]
    a, b = v.scores
    assert (a, b) == (float(int(scores.group(1))), float(int(scores.group(2))))
    assert 0 <= a <= 10 and 0 <= b <= 10 and a != b
    assert (a > b) == (v.choice == "A")
    assert v.rationale.strip()
    return v


rationale_line = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd", "Zs", "Po"), max_codepoint=0x2FF),
                         min_size=1, max_size=30).filter(
    lambda s: s.strip() and "verdict" not in s.lower() and "scores:" not in s.lower())


@st.composite
def valid_output(draw):
    lines = draw(st.lists(rationale_line, min_size=1, max_size=3))
    hi, lo = draw(st.integers(1, 10)), None
    lo = draw(st.integers(0, hi - 1))
    choice = draw(st.sampled_from(LABELS))
    a, b = (hi, lo) if choice == "A" else (lo, hi)
    text = format_completion("\n".join(lines), a, b, choice)
    if draw(st.booleans()):
        text += draw(st.sampled_from(list(END_MARKERS) + ["\n", "  \n"]))
    return text, choice, (float(a), float(b))


@st.composite
def mutated_output(draw):
    text, _, _ = draw(valid_output())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "delete", "append", "duplicate", "swap_digit"]))
        if op == "insert":
            i = draw(st.integers(0, len(text)))
            piece = draw(st.one_of(st.text(max_size=5),
                                   st.sampled_from(["\n", "[[A]]", "[[B]]", "Verdict: [[A]]", "Scores: A=3 B=7",
                                                    "<|im_end|>", "1", "0", " "])))
            text = text[:i] + piece + text[i:]
        elif op == "delete" and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[i + draw(st.integers(1, 4)):]
        elif op == "append":
            text += draw(st.one_of(st.text(max_size=10), st.sampled_from(["\nThanks!", "\nVerdict: [[B]]",
                                                                          "<|im_end|>", "\n\n"])))
        elif op == "duplicate":
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
            text = "\n".join(lines)
        elif op == "swap_digit":
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                text = text[:i] + draw(st.sampled_from("0123456789")) + text[i + 1:]
    return text


@PROPS
@given(st.text(max_size=200))
def test_parse_verdict_on_arbitrary_text_is_valid_or_explained(text: str):
    _check_verdict(text)


@PROPS
@given(valid_output())
def test_parse_verdict_accepts_every_well_formed_output(case):
    text, choice, scores = case
    v = _check_verdict(text)
    assert v.choice == choice and v.scores == scores


@settings(PROPS, max_examples=300)
@given(mutated_output())
def test_parse_verdict_on_mutated_outputs_is_valid_or_explained(text: str):
    _check_verdict(text)
