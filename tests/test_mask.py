"""The masker: variants of a value, and a streaming filter whose output does not depend on
how its input is split (issue 6, SPEC §5 "Masking")."""

from __future__ import annotations

import base64
import html
import importlib
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keyrun.mask import ENGINES, MIN_LENGTH, Masker, MaskSet, _json_forms, maskable, variants

_MODULES = {"hyperscan": "hyperscan", "ahocorasick": "ahocorasick_rs", "find": "keyrun"}


def _available(engine: str) -> bool:
    try:
        importlib.import_module(_MODULES[engine])
    except ImportError:
        if os.environ.get("CI"):
            raise
        return False
    return True


INSTALLED = [name for name in ENGINES if _available(name)]
ENGINE = pytest.mark.parametrize("engine", INSTALLED)
HYPO = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
       "-----END PRIVATE KEY-----")


def masked(masks: MaskSet, chunks: Iterable[bytes]) -> bytes:
    """Everything one masker emits for ``chunks``, then end of stream."""
    masker = masks.stream()
    return b"".join([*(masker.feed(chunk) for chunk in chunks), masker.close()])


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def oracle(masks: MaskSet, data: bytes) -> bytes:
    """The whole-input meaning, found naively: every occurrence of every pattern; runs of
    overlapping occurrences become one span named after the longest (then leftmost)."""
    found = []
    for index, pattern in enumerate(masks.patterns):
        start = data.find(pattern)
        while start >= 0:
            found.append((start, start + len(pattern), index))
            start = data.find(pattern, start + 1)
    found.sort(key=lambda o: (o[0], -o[1]))
    spans: list[list[int]] = []  # [start, end, best length, best start, best index]
    for start, end, index in found:
        if spans and start < spans[-1][1]:
            span = spans[-1]
            span[1] = max(span[1], end)
            if (end - start, -start, -index) > (span[2], -span[3], -span[4]):
                span[2:] = [end - start, start, index]
        else:
            spans.append([start, end, end - start, start, index])
    out, pos = [], 0
    for start, end, _length, _best_start, index in spans:
        out += [data[pos:start], f"<{masks.owners[index]}>".encode()]
        pos = end
    return b"".join([*out, data[pos:]])


# Variants -----------------------------------------------------------------------------


def test_short_values_are_not_masked() -> None:
    assert not maskable("12345")
    assert maskable("123456")
    assert variants("12345") == frozenset()
    masks = MaskSet({"PIN": "12345", "TOKEN": "abcdef", "EMPTY": ""})
    assert masks.keys == ("TOKEN",)
    assert masks.skipped == ("EMPTY", "PIN")
    assert masks.mask(b"12345 abcdef") == b"12345 <TOKEN>"


def test_no_values_pass_everything_through() -> None:
    masks = MaskSet({})
    masker = masks.stream()
    data = bytes(range(256)) * 3
    assert masker.feed(data) is data
    assert masker.release() == b""
    assert masker.close() == b""


def test_repr_names_keys_never_values() -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI})
    assert OPENAI not in repr(masks)
    assert "OPENAI_API_KEY" in repr(masks)


@pytest.mark.parametrize("value", [OPENAI, 'p@ss w/rd+"x"\\é✓~*', PEM, "tab\there\r\nnext line"])
def test_every_encoding_is_registered(value: str) -> None:
    raw = value.encode()
    forms = variants(value)
    expected = {
        raw,
        raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
        json.dumps(value)[1:-1].encode(),
        json.dumps(value, ensure_ascii=False)[1:-1].encode(),
        quote(value, safe="").encode(),
        quote(value).encode(),
        quote_plus(value).encode(),
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        base64.b64encode(raw + b":"),
    }
    if "\n" in value:
        expected |= {line.strip().encode() for line in value.split("\n")
                     if len(line.strip()) >= 6 and not line.startswith("-----")}
    missing = [form for form in expected if form not in forms and form != raw]
    assert not missing
    assert raw in forms


@pytest.mark.parametrize("value", [OPENAI, 'p@ss w/rd+"x"<é✓>~*&', "tab\there\r\nnext line"])
def test_the_forms_issue_13_found_missing_are_registered(value: str) -> None:
    raw = value.encode()
    forms = variants(value)
    hex_pairs = [raw.hex()[i:i + 2] for i in range(0, 2 * len(raw), 2)]
    every_u = "".join(f"\\u{ord(c):04x}" for c in value)
    expected = {
        value.encode("utf-16-le").rstrip(b"\0"),
        value.encode("utf-16-be").lstrip(b"\0"),
        base64.b32encode(raw).rstrip(b"="),
        every_u.encode(), every_u.upper().replace("\\U", "\\u").encode(),
        html.escape(value).encode(), html.escape(value, quote=False).encode(),
        "".join(f"&#{ord(c)};" for c in value).encode(),
        "".join(f"&#x{ord(c):x};" for c in value).encode(),
        " ".join(hex_pairs).encode(), " ".join(hex_pairs).upper().encode(),
        " ".join("".join(hex_pairs[i:i + 2]) for i in range(0, len(hex_pairs), 2)).encode(),
    }
    assert not [form for form in expected if form not in forms]


@ENGINE
@pytest.mark.parametrize("lead", [b"", b"x", b"xy", b"xyz", b"wxyz"])
def test_base32_and_utf16_and_xxd_groups_in_a_stream(engine: str, lead: bytes) -> None:
    masks = MaskSet({"KEY": OPENAI}, engine=engine)
    raw = OPENAI.encode()
    for encoded in (base64.b32encode(lead + raw), (lead.decode() + OPENAI).encode("utf-16"),
                    (lead.decode() + OPENAI).encode("utf-16-be")):
        out = masks.mask(b"[" + encoded + b"]")
        assert b"<KEY>" in out
        assert len(out) < 24, out  # what is left: the lead's own characters, padding
    hexed = (lead + raw).hex()
    xxd = " ".join(hexed[i:i + 4] for i in range(0, len(hexed), 4)).encode()
    assert masks.mask(b"00000000: " + xxd + b"\n") == (
        b"00000000: " + xxd[:len(lead) * 2 + len(lead) // 2] + b"<KEY>\n")


def test_whitespace_and_armor_lines_of_a_value_are_not_variants() -> None:
    value = "first line of it\n        \n\t  \n-----END PRIVATE KEY-----\n  indented-line  "
    forms = variants(value)
    assert b"indented-line" in forms
    assert all(len(form.translate(None, b" \t\r\n\x00")) >= MIN_LENGTH for form in forms)
    masks = MaskSet({"KEY": value}, engine="find")
    ordinary = b"a" + b" " * 16 + b"b\n\t  \n-----END PRIVATE KEY-----\n  indented-line\n"
    assert masks.mask(ordinary) == b"a" + b" " * 16 + b"b\n\t  \n-----END PRIVATE KEY-----\n  <KEY>\n"


def test_lowercase_percent_escapes() -> None:
    forms = variants("a/b c+d=e")
    assert b"a%2fb%20c%2bd%3de" in forms
    assert b"a%2Fb%20c%2Bd%3De" in forms
    assert b"a%2Fb+c%2Bd%3De" in forms
    assert b"a/b+c%2Bd%3De" in forms


def _inner_chars(prefix: int, size: int, total: int) -> tuple[int, int]:
    """Base64 characters [first, last) whose 6 bits all come from the value's bytes."""
    first = -(-8 * prefix // 6)
    last = 8 * (prefix + size) // 6
    return first, min(last, -(-8 * total // 6))


def _assert_covers(out: bytes, encoded: bytes, label: bytes, first: int, last: int) -> None:
    assert out.count(label) == 1, (out, encoded)
    head, tail = out.split(label)
    assert encoded.startswith(head)
    assert encoded.endswith(tail)
    assert len(head) <= first
    assert len(encoded) - len(tail) >= last


@given(prefix=st.binary(max_size=7), suffix=st.binary(max_size=7),
       value=st.text(min_size=6, max_size=40), urlsafe=st.booleans())
@HYPO
def test_base64_at_every_alignment(prefix: bytes, suffix: bytes, value: str,
                                   urlsafe: bool) -> None:
    """Whatever surrounds the value, every base64 character that carries only the
    value's bits is masked; at the end of the stream, through the padding."""
    raw = value.encode()
    masks = MaskSet({"KEY": value}, engine="find")
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(prefix + raw + suffix)
    first, last = _inner_chars(len(prefix), len(raw), len(prefix + raw + suffix))
    assume(encoded[first:last] not in encode(prefix) + encode(suffix))
    out = masks.mask(b"data: " + encoded + b"\n")
    assert out.startswith(b"data: ")
    _assert_covers(out[6:-1], encoded, b"<KEY>", first, last)
    if not suffix:
        assert out.endswith(b"<KEY>\n")


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "deploy-bot"])
def test_authorization_basic(user: str) -> None:
    masks = MaskSet({"PASSWORD": "hunter2-correct-horse"}, engine="find")
    token = base64.b64encode(f"{user}:hunter2-correct-horse".encode())
    out = masks.mask(b"Authorization: Basic " + token + b"\r\n")
    assert out.endswith(b"<PASSWORD>\r\n")
    head = out[len(b"Authorization: Basic "):-len(b"<PASSWORD>\r\n")]
    assert token.startswith(head)
    assert len(head) <= -(-8 * len(user) // 6)


def test_api_key_as_basic_user_name() -> None:
    masks = MaskSet({"STRIPE_KEY": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}, engine="find")
    token = base64.b64encode(b"sk_live_4eC39HqLyjWDarjtT1zdp7dc:")
    assert masks.mask(b"Basic " + token) == b"Basic <STRIPE_KEY>"


@ENGINE
def test_each_encoding_is_masked(engine: str) -> None:
    value = 'p@ss w/rd+"x"\\é'
    masks = MaskSet({"DB_PASSWORD": value}, engine=engine)
    raw = value.encode()
    for form in [raw, json.dumps(value).encode()[1:-1], quote(value).encode(),
                 quote_plus(value).encode(), quote(value, safe="").lower().encode(),
                 raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw),
                 base64.urlsafe_b64encode(raw).rstrip(b"=")]:
        assert masks.mask(b"[" + form + b"]") == b"[<DB_PASSWORD>]", form


@ENGINE
@pytest.mark.parametrize("encoded", [
    'p\\u0026ss\\u003cw\\u003erd+é\\"x/y',  # Go's encoding/json (HTML-safe)
    'p&ss<w>rd+\\u00E9\\"x/y',  # upper-case hex digits
    'p\\u0026ss\\u003Cw\\u003Erd\\u002B\\u00E9\\u0022x/y',  # .NET's System.Text.Json
    'p&ss<w>rd+\\u00e9\\"x\\/y',  # PHP's json_encode
])
def test_json_escapes_of_other_languages_are_masked(engine: str, encoded: str) -> None:
    masks = MaskSet({"DB_PASSWORD": 'p&ss<w>rd+é"x/y'}, engine=engine)
    document = b'{"password": "' + encoded.encode() + b'"}'
    assert masks.mask(document) == b'{"password": "<DB_PASSWORD>"}'


def test_json_forms_are_only_the_distinct_ones() -> None:
    assert _json_forms(OPENAI) == {OPENAI.encode()}
    assert _json_forms("wJalrXUtnFEMI/K7MDENG+bPxRfiCY") == {
        b"wJalrXUtnFEMI/K7MDENG+bPxRfiCY", b"wJalrXUtnFEMI\\/K7MDENG+bPxRfiCY",
        b"wJalrXUtnFEMI/K7MDENG\\u002BbPxRfiCY", b"wJalrXUtnFEMI\\/K7MDENG\\u002BbPxRfiCY"}


# Streaming ----------------------------------------------------------------------------


@ENGINE
def test_every_single_split_point(engine: str) -> None:
    values = {"A": "abcdefgh", "B": "efghijklmn", "C": "xyzxyzxyz", "D": OPENAI}
    masks = MaskSet(values, engine=engine)
    data = (b"pre abcdefghijklmn mid xyzxyzxyzxyz \x00\xff\r\n" + OPENAI.encode()
            + b" " + base64.b64encode(OPENAI.encode()) + b" abcdefg")
    whole = masks.mask(data)
    assert whole == (b"pre <B> mid <C> \x00\xff\r\n<D> <D> abcdefg")
    for cut in range(len(data) + 1):
        assert masked(masks, [data[:cut], data[cut:]]) == whole, cut


@ENGINE
def test_byte_at_a_time(engine: str) -> None:
    masks = MaskSet({"KEY": OPENAI, "PEM": PEM}, engine=engine)
    data = (f"key={OPENAI}\n{PEM}\n".encode() + PEM.replace("\n", "\r\n").encode()
            + b"\xc3\x28 \x00 done")
    one_byte = [data[i:i + 1] for i in range(len(data))]
    assert masked(masks, one_byte) == b"key=<KEY>\n<PEM>\n<PEM>\xc3\x28 \x00 done"


@ENGINE
def test_overlapping_values_mask_the_union(engine: str) -> None:
    masks = MaskSet({"A": "abcdefgh", "B": "efghijklmnop"}, engine=engine)
    # B is longer: it names the span; no tail of either is left showing
    assert masks.mask(b"[abcdefghijklmnop]") == b"[<B>]"
    assert masks.mask(b"[abcdefghijk]") == b"[<A>ijk]"
    # a chain of overlapping occurrences of one value is one span
    masks = MaskSet({"R": "abcabcabc"}, engine=engine)
    assert masks.mask(b"-abcabcabcabcabc-") == b"-<R>-"


@ENGINE
def test_nested_values_longest_wins(engine: str) -> None:
    masks = MaskSet({"INNER": "token-123", "OUTER": "my-token-1234-x"}, engine=engine)
    assert masks.mask(b"a my-token-1234-x b token-123 c") == b"a <OUTER> b <INNER> c"
    assert masks.mask(b"my-token-1234") == b"my-<INNER>4"


@ENGINE
def test_same_length_tie_goes_to_the_leftmost(engine: str) -> None:
    masks = MaskSet({"A": "abcdefgh", "B": "efghijkl"}, engine=engine)
    assert masks.mask(b"abcdefghijkl") == b"<A>"


@ENGINE
def test_multi_line_value(engine: str) -> None:
    masks = MaskSet({"PEM": PEM}, engine=engine)
    lines = PEM.split("\n")
    assert masks.mask(PEM.encode()) == b"<PEM>"
    assert masks.mask(PEM.replace("\n", "\r\n").encode()) == b"<PEM>"
    # printed one line at a time (a log that quotes it), each line is masked
    assert masks.mask(f"> {lines[1]}\n> {lines[2]}\n".encode()) == b"> <PEM>\n> <PEM>\n"
    assert masks.mask(json.dumps({"key": PEM}).encode()) == b'{"key": "<PEM>"}'


@ENGINE
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=20))
@HYPO
def test_passthrough_is_byte_identical(engine: str, data: bytes, cuts: list[int]) -> None:
    masks = MaskSet({"KEY": OPENAI, "OTHER": "\x00\r\n\xff-ab"}, engine=engine)
    assume(not any(p in data for p in masks.patterns))
    assert masked(masks, split(data, cuts)) == data


def _fragments(values: Mapping[str, str]) -> st.SearchStrategy[bytes]:
    pieces = [v.encode() for v in values.values()]
    pieces += [p[: len(p) // 2] for p in pieces] + [p[len(p) // 2:] for p in pieces]
    encoded = [f for v in values.values() for f in sorted(variants(v))[:6]]
    return st.one_of(st.sampled_from(pieces), st.sampled_from(encoded or [b"x"]),
                     st.binary(max_size=4), st.sampled_from([b"\r\n", b"\n", b"\x00", b"<A>"]))


@st.composite
def _streams(draw: st.DrawFn) -> tuple[dict[str, str], bytes, list[int]]:
    alphabet = st.sampled_from("ab\nc")
    names = draw(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=4, unique=True))
    values = {n: draw(st.text(alphabet, min_size=MIN_LENGTH, max_size=12)) for n in names}
    data = b"".join(draw(st.lists(_fragments(values), max_size=25)))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return values, data, cuts


@ENGINE
@given(stream=_streams())
@HYPO
def test_any_split_matches_the_whole_input_meaning(
        engine: str, stream: tuple[dict[str, str], bytes, list[int]]) -> None:
    values, data, cuts = stream
    masks = MaskSet(values, engine=engine)
    expected = masked(masks, [data])
    if not any(gap in data for gap in (b"\n", b"\r", b"\x1b")):
        # the oracle knows no gaps: a value across a line break is masked too
        assert expected == oracle(masks, data)
    assert masked(masks, split(data, cuts)) == expected
    assert masked(masks, [data[i:i + 1] for i in range(len(data))]) == expected


@ENGINE
@given(stream=_streams())
@HYPO
def test_output_never_holds_a_registered_pattern(
        engine: str, stream: tuple[dict[str, str], bytes, list[int]]) -> None:
    values, data, cuts = stream
    masks = MaskSet(values, engine=engine)
    out = masked(masks, split(data, cuts))
    # between labels, no pattern survives whole
    pieces = _between_labels(out, values)
    assert not any(p in piece for p in masks.patterns for piece in pieces)


# Held prefixes, release, memory --------------------------------------------------------


@ENGINE
def test_release_lets_out_at_most_four_bytes_of_a_prefix(engine: str) -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine=engine)
    masker = masks.stream()
    assert masker.feed(b"Enter key: sk-pro") == b"Enter key: "
    assert masker.releasable
    assert masker.release() == b"sk-p"
    assert masker.pending
    assert not masker.releasable
    assert masker.release() == b""
    assert masker.feed(b"j-") == b""
    assert masker.release() == b""  # never more of the same prefix, however many pauses
    # the rest of the secret, after the pauses, is still masked
    rest = OPENAI.encode()[len("sk-proj-"):]
    assert masker.feed(rest + b" ok\n") == b"<OPENAI_API_KEY> ok\n"
    assert masker.close() == b""


@ENGINE
def test_a_prefix_that_stops_matching_is_let_out_whole(engine: str) -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine=engine)
    masker = masks.stream()
    assert masker.feed(b"key: sk-pro") == b"key: "
    assert masker.release() == b"sk-p"
    assert masker.feed(b"j-?? ") == b"roj-?? "
    assert not masker.pending
    masker = masks.stream()
    assert masker.feed(b"sk-pro") + masker.release() + masker.close() == b"sk-pro"


@ENGINE
def test_release_counts_from_each_prefix_still_live(engine: str) -> None:
    """After a prefix dies, a later one inside the held bytes gets its own 4 bytes, no more
    than 4 counted from its start."""
    masks = MaskSet({"KEY": "abababXYZ123"}, engine=engine)
    masker = masks.stream()
    assert masker.feed(b"ababab") == b""
    assert masker.release() == b"abab"
    assert masker.feed(b"ab") == b""  # "abababab": "ababab" starting at 2 is still live
    assert masker.release() == b"ab"  # bytes 2..5 of the stream: 4 from that start
    assert masker.feed(b"XYZ123!") == b"<KEY>!"


def test_release_does_not_cut_a_character_in_two() -> None:
    masks = MaskSet({"KEY": "aé✓bcdefgh"}, engine="find")
    masker = masks.stream()
    assert masker.feed("aé✓bc".encode()) == b""
    assert masker.release() == "aé".encode()  # "a", "é" (2 bytes): 3 bytes; "✓" is 3 more
    assert masker.feed(b"defgh") + masker.close() == b"<KEY>"


@ENGINE
def test_ordinary_prompt_is_not_held(engine: str) -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine=engine)
    masker = masks.stream()
    assert masker.feed(b"Password: ") == b"Password: "
    assert not masker.pending


@ENGINE
def test_release_never_emits_part_of_a_finished_match(engine: str) -> None:
    masks = MaskSet({"SHORT": "abcdef12", "LONG": "abcdef1234"}, engine=engine)
    masker = masks.stream()
    assert masker.feed(b"x abcdef12") == b"x "  # could still become LONG
    assert masker.release() == b"<SHORT>"
    assert masker.feed(b"34") == b"<LONG>"  # the longer match gets a label of its own
    masker = masks.stream()
    assert masker.feed(b"x abcdef123") == b"x "
    assert masker.close() == b"<SHORT>3"


@ENGINE
def test_open_span_is_held_as_a_label_not_bytes(engine: str) -> None:
    masks = MaskSet({"A": "aaaaaa"}, engine=engine)
    masker = masks.stream()
    out = [masker.feed(b"x"), *(masker.feed(b"a" * 1024) for _ in range(64))]
    assert b"".join(out) == b"x"
    assert masker.buffered < masks.longest
    assert masker.feed(b"y") == b"<A>y"


@ENGINE
def test_memory_is_bounded_by_the_longest_variant(engine: str) -> None:
    masks = MaskSet({"KEY": OPENAI}, engine=engine)
    masker = masks.stream()
    near_miss = OPENAI.encode()[:-1]
    total = 0
    for _ in range(2000):
        total += len(masker.feed(near_miss))
        assert masker.buffered < masks.longest
    total += len(masker.close())
    assert total == 2000 * len(near_miss)


@pytest.mark.parametrize("engine", INSTALLED)
def test_engines_agree(engine: str) -> None:
    values = {"A": OPENAI, "B": PEM, "C": "abcabcabc", "D": "p@ss w/rd+ü"}
    stream = b"".join(sorted(f for v in values.values() for f in variants(v))) * 2
    reference = MaskSet(values, engine="find")
    assert MaskSet(values, engine=engine).mask(stream) == reference.mask(stream)


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(ValueError, match="hyperscan, ahocorasick, find"):
        MaskSet({"A": OPENAI}, engine="nope")


def _chunks(data: bytes, size: int) -> Sequence[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@ENGINE
def test_large_stream_in_pipe_sized_chunks(engine: str) -> None:
    values = {f"KEY_{i}": f"value-{i:03d}-" + "q" * 20 for i in range(100)}
    masks = MaskSet(values, engine=engine)
    line = b"".join(f"KEY_{i}=value-{i:03d}-{'q' * 20}\n".encode() for i in range(100))
    expected = b"".join(f"KEY_{i}=<KEY_{i}>\n".encode() for i in range(100))
    for size in (4096, 65536):
        assert masked(masks, _chunks(line * 200, size)) == expected * 200
    assert masked(masks, _chunks(line, 1)) == expected


def test_masker_is_per_stream() -> None:
    masks = MaskSet({"KEY": OPENAI}, engine="find")
    out, err = masks.stream(), masks.stream()
    half = len(OPENAI) // 2
    assert out.feed(OPENAI[:half].encode()) == b""
    assert err.feed(OPENAI[half:].encode()) + err.close() == OPENAI[half:].encode()
    # the last byte could begin an overlapping variant: the label waits for a release
    assert out.feed(OPENAI[half:].encode()) + out.release() == b"<KEY>"
    assert isinstance(out, Masker)


@st.composite
def _feeds_and_releases(draw: st.DrawFn) -> tuple[dict[str, str], list[bytes | None]]:
    values, data, cuts = draw(_streams())
    steps: list[bytes | None] = []
    for piece in split(data, cuts):
        steps.append(piece)
        if draw(st.booleans()):
            steps.append(None)  # a silence: release
    return values, steps


def _between_labels(out: bytes, names: Iterable[str]) -> list[bytes]:
    pieces = [out]
    for name in names:
        pieces = [part for piece in pieces for part in piece.split(f"<{name}>".encode())]
    return pieces


@ENGINE
@given(case=_feeds_and_releases())
@HYPO
def test_releases_never_let_more_than_four_bytes_of_a_secret_through(
        engine: str, case: tuple[dict[str, str], list[bytes | None]]) -> None:
    values, steps = case
    masks = MaskSet(values, engine=engine)
    masker = masks.stream()
    out = b"".join(masker.release() if step is None else masker.feed(step) for step in steps)
    out += masker.close()
    data = b"".join(step for step in steps if step is not None)
    if not any(p in data for p in masks.patterns):
        assert out == data
    pieces = _between_labels(out, values)
    assert not any(p in piece for p in masks.patterns for piece in pieces)
    assert masker.buffered == 0


@ENGINE
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 14, len(OPENAI) - 1])
@pytest.mark.parametrize("lead", [b"", b"x", b"token: ", "é".encode()])
def test_a_value_written_in_pieces_with_pauses_shows_at_most_its_first_four_bytes(
        engine: str, size: int, lead: bytes) -> None:
    """The issue's timings at the masker: a pause (a release) after every piece."""
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine=engine)
    masker = masks.stream()
    data = lead + OPENAI.encode() + b"\n"
    out = b""
    for piece in [lead, *_chunks(OPENAI.encode(), size), b"\n"]:
        out += masker.feed(piece) + masker.release()
    out += masker.close()
    assert out == lead + OPENAI.encode()[:4] + b"<OPENAI_API_KEY>\n"
    assert masked(masks, [data]) == lead + b"<OPENAI_API_KEY>\n"


@ENGINE
def test_a_value_begun_on_one_stream_and_ended_on_the_other_is_masked_on_each(
        engine: str) -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI, "OTHER": "zzzzzzzz"}, engine=engine)
    out, err = masks.stream(), masks.stream()
    raw = OPENAI.encode()
    assert out.feed(b"a " + raw[:20]) == b"a "
    assert out.release() == raw[:4]
    assert err.feed(b"!") == b"!"
    assert out.continuation(b"nothing") is None
    assert err.continuation(raw[20:]) is None  # err holds nothing
    start, taken, index = out.continuation(raw[20:] + b" zzzzzzzz!") or (0, 0, 0)
    assert (start, taken, masks.owners[index]) == (0, len(raw) - 20, "OPENAI_API_KEY")
    assert out.end_held(start, index) == b"<OPENAI_API_KEY>"
    assert err.feed_continuing(raw[20:] + b" zzzzzzzz!", taken, index) == (
        b"<OPENAI_API_KEY> <OTHER>!")
    assert out.feed(b" done") + out.close() == b" done"
    assert err.close() == b""


@ENGINE
def test_a_value_interrupted_by_the_other_stream_is_found_in_one_read(engine: str) -> None:
    """Both outputs were read in the same round: stdout's read holds the value's start and
    what came after the stderr part; split_point says where to stop feeding stdout."""
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine=engine)
    out, err = masks.stream(), masks.stream()
    raw = OPENAI.encode()
    stdout, stderr = b"a: " + raw[:20] + b"|\n", raw[20:] + b"\n"
    assert out.split_point(stdout, b"unrelated\n") is None
    assert err.split_point(stderr, stdout) is None
    cut = out.split_point(stdout, stderr)
    assert cut == 3 + 20
    assert out.feed(stdout[:cut]) == b"a: "
    start, taken, index = out.continuation(stderr) or (0, 0, 0)
    assert out.end_held(start, index) == b"<OPENAI_API_KEY>"
    assert err.feed_continuing(stderr, taken, index) + err.close() == b"<OPENAI_API_KEY>\n"
    assert out.feed(stdout[cut:]) + out.close() == b"|\n"


def test_a_held_value_start_cut_at_the_read_boundary_is_found() -> None:
    masks = MaskSet({"OPENAI_API_KEY": OPENAI}, engine="find")
    out = masks.stream()
    raw = OPENAI.encode()
    assert out.feed(raw[:20]) == b""
    assert out.split_point(b"|\n", raw[20:] + b"\n") == 0  # the other output goes first
    assert out.split_point(b"|\n", b"unrelated") is None


@ENGINE
@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize("width", [64, 76])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("lead", [0, 1, 2, 50])
def test_base64_wrapped_into_lines(engine: str, size: int, width: int, newline: bytes,
                                   lead: int) -> None:
    masks = MaskSet({"KEY": OPENAI}, engine=engine)
    encoded = base64.b64encode(b"x" * lead + OPENAI.encode() + b"y" * 30)
    wrapped = newline.join(encoded[i:i + width] for i in range(0, len(encoded), width))
    out = masked(masks, _chunks(wrapped + newline, size))
    assert out.count(b"<KEY>") == 1
    unmasked = out.replace(newline, b"").split(b"<KEY>")
    assert encoded.startswith(unmasked[0])
    assert encoded.endswith(unmasked[1])
    assert len(unmasked[0]) <= 4 * lead // 3 + 1  # the lead's own characters
    assert len(unmasked[1]) <= 43  # the 30 bytes after it (40), a shared one, padding


@ENGINE
@pytest.mark.parametrize("size", [1, 3, 4096])
def test_a_colour_escape_inside_a_value(engine: str, size: int) -> None:
    masks = MaskSet({"KEY": OPENAI}, engine=engine)
    raw = OPENAI.encode()
    for data, expected in [
        (b"k=" + raw[:9] + b"\x1b[1;31m" + raw[9:] + b"\x1b[0m!", b"k=<KEY>\x1b[0m!"),
        (b"\x1b[32m" + raw + b"\x1b[0m", b"\x1b[32m<KEY>\x1b[0m"),
        (raw[:5] + b"\x1b[1m" + raw[5:30] + b"\x1b[22m" + raw[30:] + b"\n", b"<KEY>\n"),
    ]:
        assert masked(masks, _chunks(data, size)) == expected
    ordinary = b"sk-pr\x1b[1mnothing\x1b[0m sk-proj-\r\nAb3\n"
    assert masked(masks, _chunks(ordinary, size)) == ordinary
