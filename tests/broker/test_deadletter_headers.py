"""The properties of dead-lettered copies (broker/deadletter.py), field by field.

Pure unit tests on raw property bytes. Values and field types are read back
with a small reader of our own (`fields`), so a test sees the exact types
written ('l' for count, 'T' for time, ...), and with the wire codec's
decoder where only values matter.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.amqp.codec import check_properties, decode_properties, parse_table
from warrenmq.broker.deadletter import (
    REASONS,
    Death,
    dead_letter_properties,
    dead_letter_routing_keys,
    death_history,
    death_routing_keys,
    is_automatic_cycle,
)

CONTENT_TYPE, HEADERS, DELIVERY_MODE, EXPIRATION, APP_ID = 0x8000, 0x2000, 0x1000, 0x0100, 0x0008
DEATH_KEYS = {
    b"x-death",
    b"x-first-death-exchange",
    b"x-first-death-queue",
    b"x-first-death-reason",
    b"x-last-death-exchange",
    b"x-last-death-queue",
    b"x-last-death-reason",
}


# ------------------------------------------------------------ encoding helpers
def short(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def sized(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack(">I", len(data)) + data


def S(value: bytes) -> bytes:
    return sized(b"S", value)


def A(*values: bytes) -> bytes:
    return sized(b"A", b"".join(values))


def entry(name: bytes, value: bytes) -> bytes:
    return short(name) + value


def table(*entries: tuple[bytes, bytes]) -> bytes:
    data = b"".join(entry(n, v) for n, v in entries)
    return struct.pack(">I", len(data)) + data


def props(
    headers: bytes | None = None, expiration: bytes | None = None, app_id: bytes | None = None
) -> bytes:
    """content-type "text/plain", delivery-mode 2, and what is given."""
    flags = CONTENT_TYPE | DELIVERY_MODE
    out = short(b"text/plain")
    if headers is not None:
        flags |= HEADERS
        out += headers
    out += b"\x02"
    if expiration is not None:
        flags |= EXPIRATION
        out += short(expiration)
    if app_id is not None:
        flags |= APP_ID
        out += short(app_id)
    return struct.pack(">H", flags) + out


# ------------------------------------------------------------- reading back
def headers_table(raw: bytes) -> bytes:
    """The headers table's contents (content-type is always first, headers next)."""
    flags = struct.unpack_from(">H", raw)[0]
    assert flags & HEADERS
    pos = 2 + (1 + raw[2] if flags & CONTENT_TYPE else 0)
    n = struct.unpack_from(">I", raw, pos)[0]
    return raw[pos + 4 : pos + 4 + n]


def _value(data: bytes, pos: int) -> tuple[tuple[str, Any], int]:
    kind = chr(data[pos])
    fixed = {"b": ">b", "l": ">q", "T": ">Q"}
    if kind in fixed:
        fmt = struct.Struct(fixed[kind])
        return (kind, fmt.unpack_from(data, pos + 1)[0]), pos + 1 + fmt.size
    n = struct.unpack_from(">I", data, pos + 1)[0]
    body = data[pos + 5 : pos + 5 + n]
    if kind == "A":
        items, p = [], 0
        while p < len(body):
            item, p = _value(body, p)
            items.append(item)
        return ("A", items), pos + 5 + n
    if kind == "F":
        return ("F", fields(body)), pos + 5 + n
    assert kind == "S", kind
    return ("S", body), pos + 5 + n


def fields(data: bytes) -> list[tuple[bytes, tuple[str, Any]]]:
    """A table's contents as [(name, (type, value))], in order, types kept."""
    out, pos = [], 0
    while pos < len(data):
        name = data[pos + 1 : pos + 1 + data[pos]]
        value, pos = _value(data, pos + 1 + data[pos])
        out.append((name, value))
    return out


def header(raw: bytes, name: bytes) -> tuple[str, Any]:
    found = [v for n, v in fields(headers_table(raw)) if n == name]
    assert len(found) == 1, (name, found)
    return found[0]


def x_death(raw: bytes) -> list[dict[bytes, tuple[str, Any]]]:
    kind, items = header(raw, b"x-death")
    assert kind == "A"
    assert all(k == "F" for k, _ in items)
    return [dict(t) for _, t in items]


def death_summary(raw: bytes) -> list[tuple[bytes, bytes, int, int, bytes]]:
    """(queue, reason, count, time, exchange) of each x-death entry, in order."""
    return [
        (d[b"queue"][1], d[b"reason"][1], d[b"count"][1], d[b"time"][1], d[b"exchange"][1])
        for d in x_death(raw)
    ]


def first_last(raw: bytes) -> dict[str, bytes]:
    out = {}
    for name in sorted(DEATH_KEYS - {b"x-death"}):
        kind, value = header(raw, name)
        assert kind == "S"
        out[name.decode()] = value
    return out


def die(raw: bytes, queue: str, reason: str, exchange: str, now_s: int, *, ours: bool = True,
        keys: tuple[str, ...] = ("rk",)) -> bytes:  # fmt: skip
    return dead_letter_properties(
        raw, ours=ours, queue=queue, reason=reason, exchange=exchange,
        routing_keys=list(keys), now_s=now_s,
    )  # fmt: skip


# ------------------------------------------------------------------ x-death
def test_first_death_writes_rabbitmq_fields_with_rabbitmq_types() -> None:
    raw = props(table((b"zeta", b"b\x05")), expiration=b"060000", app_id=b"app")
    out = die(raw, "q1", "rejected", "", 1_700_000_000, ours=False, keys=("rk", "cc1"))

    # Field order and types as mc_amqpl.erl death_table writes them.
    expected = sized(b"F", b"".join([
        entry(b"original-expiration", S(b"60000")),
        entry(b"count", b"l" + struct.pack(">q", 1)),
        entry(b"reason", S(b"rejected")),
        entry(b"queue", S(b"q1")),
        entry(b"time", b"T" + struct.pack(">Q", 1_700_000_000)),
        entry(b"exchange", S(b"")),
        entry(b"routing-keys", A(S(b"rk"), S(b"cc1"))),
    ]))  # fmt: skip
    names = [n for n, _ in fields(headers_table(out))]
    assert names == [b"zeta", *sorted(DEATH_KEYS)]
    assert entry(b"x-death", A(expected)) in headers_table(out)
    assert first_last(out) == {
        "x-first-death-exchange": b"", "x-first-death-queue": b"q1",
        "x-first-death-reason": b"rejected", "x-last-death-exchange": b"",
        "x-last-death-queue": b"q1", "x-last-death-reason": b"rejected",
    }  # fmt: skip
    decoded = decode_properties(out)
    assert decoded.expiration is None
    assert (decoded.content_type, decoded.delivery_mode, decoded.app_id) == ("text/plain", 2, "app")


def test_repeated_deaths_across_two_queues_and_reasons() -> None:
    raw = props(table((b"a", S(b"1"))))
    # rejected in q1 (published to "orders"), then twice more via the DLX "dlx"
    raw = die(raw, "q1", "rejected", "orders", 100, keys=("new",))
    raw = die(raw, "q1", "rejected", "dlx", 110, keys=("again",))
    assert death_summary(raw) == [(b"q1", b"rejected", 2, 100, b"orders")]
    assert x_death(raw)[0][b"routing-keys"] == ("A", [("S", b"new")])  # kept from the first

    raw = die(raw, "q2", "expired", "dlx", 120)
    assert death_summary(raw) == [
        (b"q2", b"expired", 1, 120, b"dlx"),
        (b"q1", b"rejected", 2, 100, b"orders"),
    ]
    assert first_last(raw) == {
        "x-first-death-exchange": b"orders", "x-first-death-queue": b"q1",
        "x-first-death-reason": b"rejected", "x-last-death-exchange": b"dlx",
        "x-last-death-queue": b"q2", "x-last-death-reason": b"expired",
    }  # fmt: skip

    raw = die(raw, "q1", "rejected", "dlx2", 130)
    # The updated entry moves to the front; its time stays the first one's.
    assert death_summary(raw) == [
        (b"q1", b"rejected", 3, 100, b"orders"),
        (b"q2", b"expired", 1, 120, b"dlx"),
    ]
    assert first_last(raw) == {
        "x-first-death-exchange": b"orders", "x-first-death-queue": b"q1",
        "x-first-death-reason": b"rejected", "x-last-death-exchange": b"dlx2",
        "x-last-death-queue": b"q1", "x-last-death-reason": b"rejected",
    }  # fmt: skip
    assert header(raw, b"a") == ("S", b"1")
    assert death_history(raw, True) == [
        Death("q1", "rejected", 3, 100, "orders", ("new",)),
        Death("q2", "expired", 1, 120, "dlx", ("rk",)),
    ]


def test_each_reason_is_its_own_entry() -> None:
    raw = props()
    for t, reason in enumerate(REASONS):
        raw = die(raw, "q", reason, "x", 10 + t)
    assert [(d.reason, d.count, d.time) for d in death_history(raw, True)] == [
        ("delivery_limit", 1, 13), ("maxlen", 1, 12), ("expired", 1, 11), ("rejected", 1, 10),
    ]  # fmt: skip


def test_expiration_becomes_original_expiration_of_that_entry_only() -> None:
    raw = die(props(expiration=b"5000"), "q1", "expired", "", 1)
    assert decode_properties(raw).expiration is None
    assert struct.unpack_from(">H", raw)[0] & EXPIRATION == 0
    raw = die(raw, "q2", "expired", "dlx", 2)
    raw = die(raw, "q1", "expired", "dlx", 3)
    entries = {d[b"queue"][1]: d for d in x_death(raw)}
    assert entries[b"q1"][b"original-expiration"] == ("S", b"5000")
    assert b"original-expiration" not in entries[b"q2"]
    assert death_history(raw, True)[0].original_expiration == "5000"


@pytest.mark.parametrize(("expiration", "kept"), [(b"0", "0"), (b"+700", "700"), (b"007", "7")])
def test_original_expiration_is_the_integer(expiration: bytes, kept: str) -> None:
    raw = die(props(expiration=expiration), "q", "expired", "", 1)
    assert death_history(raw, True)[0].original_expiration == kept


def test_no_headers_before() -> None:
    out = die(b"\x00\x00", "q", "maxlen", "ex", 7)
    assert struct.unpack_from(">H", out)[0] == HEADERS
    assert check_properties(out)
    assert [n for n, _ in fields(out[6:])] == sorted(DEATH_KEYS)
    assert death_history(out, True) == [Death("q", "maxlen", 1, 7, "ex", ("rk",))]


def test_death_headers_replace_in_place_and_duplicates_go() -> None:
    raw = props(table(
        (b"a", S(b"1")), (b"x-last-death-queue", S(b"old")), (b"b", S(b"2")),
        (b"x-last-death-queue", S(b"older")), (b"c", S(b"3")),
    ))  # fmt: skip
    out = die(raw, "q", "rejected", "", 1)
    names = [n for n, _ in fields(headers_table(out))]
    rest = sorted(DEATH_KEYS - {b"x-last-death-queue"})
    assert names == [b"a", b"x-last-death-queue", b"b", b"c", *rest]
    assert header(out, b"x-last-death-queue") == ("S", b"q")


# ------------------------------------------------- a publisher's x-death
def client_death_headers() -> bytes:
    client_entry = sized(b"F", b"".join([
        entry(b"count", b"l" + struct.pack(">q", 7)),
        entry(b"reason", S(b"rejected")),
        entry(b"queue", S(b"q1")),
        entry(b"time", b"T" + struct.pack(">Q", 5)),
        entry(b"exchange", S(b"")),
        entry(b"routing-keys", A(S(b"rk"))),
    ]))  # fmt: skip
    return table(
        (b"x-death", A(client_entry)),
        (b"x-first-death-reason", S(b"expired")),
        (b"x-first-death-queue", S(b"elsewhere")),
        (b"x-last-death-queue", S(b"elsewhere")),
        (b"keep", S(b"me")),
    )


def test_publisher_x_death_is_not_read() -> None:
    raw = props(client_death_headers())
    assert death_history(raw, False) == []
    # Were it ours, it would be history: the flag is what decides.
    assert death_history(raw, True) == [Death("q1", "rejected", 7, 5, "", ("rk",))]


def test_first_death_of_a_publisher_x_death_starts_fresh() -> None:
    out = die(props(client_death_headers()), "q1", "rejected", "ex", 100, ours=False)
    assert death_summary(out) == [(b"q1", b"rejected", 1, 100, b"ex")]
    assert first_last(out) == {
        "x-first-death-exchange": b"ex", "x-first-death-queue": b"q1",
        "x-first-death-reason": b"rejected", "x-last-death-exchange": b"ex",
        "x-last-death-queue": b"q1", "x-last-death-reason": b"rejected",
    }  # fmt: skip
    names = [n for n, _ in fields(headers_table(out))]
    assert names[:4] == [b"x-death", b"x-first-death-reason", b"x-first-death-queue",
                         b"x-last-death-queue"]  # fmt: skip
    assert header(out, b"keep") == ("S", b"me")
    # The next death counts on from the history just written.
    again = die(out, "q1", "rejected", "dlx", 200)
    assert death_summary(again) == [(b"q1", b"rejected", 2, 100, b"ex")]


def test_unknown_reason_and_malformed_properties() -> None:
    with pytest.raises(ValueError, match="reason"):
        die(props(), "q", "timeout", "", 1)
    with pytest.raises(ValueError, match="malformed"):
        die(b"\x20\x00\x00\x00\x00\x09", "q", "expired", "", 1)


# ------------------------------------------------------------ routing keys
def cc_bcc(cc: tuple[bytes, ...], bcc: tuple[bytes, ...]) -> bytes:
    return props(table((b"CC", A(*map(S, cc))), (b"BCC", A(*map(S, bcc)))))


def test_death_routing_keys_include_cc_never_bcc() -> None:
    raw = cc_bcc((b"c1", b"c2"), (b"b1",))
    assert death_routing_keys("rk", raw) == ["rk", "c1", "c2"]
    assert death_routing_keys("rk", props()) == ["rk"]
    # A copy routed by x-dead-letter-routing-key has that key only.
    assert death_routing_keys("dlk", raw, explicit_key=True) == ["dlk"]


def test_death_routing_keys_take_bcc_out_as_erlang_does() -> None:
    # [rk | CC ++ BCC] -- BCC: each BCC value removes the first equal key.
    assert death_routing_keys("a", cc_bcc((b"b",), (b"a",))) == ["b", "a"]
    assert death_routing_keys("a", cc_bcc((), (b"a", b"x"))) == ["a"]
    # A dead-letter routing key that is also a BCC value is taken out.
    assert death_routing_keys("a", cc_bcc((), (b"a",)), explicit_key=True) == []


def test_cc_values_other_than_strings_do_not_count() -> None:
    raw = props(table((b"CC", A(S(b"c1"), b"b\x01", S(b"c2")))))
    assert death_routing_keys("rk", raw) == ["rk", "c1", "c2"]
    not_array = props(table((b"CC", S(b"c1"))))
    assert death_routing_keys("rk", not_array) == ["rk"]


def test_dead_letter_routing_keys() -> None:
    raw = cc_bcc((b"c1",), (b"b1",))
    assert dead_letter_routing_keys("rk", raw, None) == ["rk", "c1", "b1"]
    assert dead_letter_routing_keys("rk", raw, "dlk") == ["dlk"]
    assert dead_letter_routing_keys("dlk", raw, None, explicit_key=True) == ["dlk"]


# ------------------------------------------------------------------ cycles
def test_automatic_cycle_is_detected() -> None:
    # q1 --expired--> q2 --expired--> back to q1
    raw = die(props(), "q1", "expired", "", 1)
    raw = die(raw, "q2", "expired", "dlx", 2)
    assert is_automatic_cycle(raw, "q1")
    assert is_automatic_cycle(raw, "q2")
    assert not is_automatic_cycle(raw, "q3")


def test_queue_dead_lettering_to_itself_on_expiry_is_a_cycle() -> None:
    raw = die(props(), "q1", "expired", "", 1)
    assert is_automatic_cycle(raw, "q1")
    assert not is_automatic_cycle(die(props(), "q1", "rejected", "", 1), "q1")


def test_cycle_with_a_rejection_in_it_is_not_dropped() -> None:
    # q1 --rejected--> q2 --expired--> back to q1: a client is in the loop.
    raw = die(props(), "q1", "rejected", "", 1)
    raw = die(raw, "q2", "expired", "dlx", 2)
    assert not is_automatic_cycle(raw, "q1")
    assert is_automatic_cycle(raw, "q2")


def test_cycle_looks_at_the_newest_death_from_the_target() -> None:
    # Deaths, newest first: (q2 expired), (q1 rejected), (q1 expired).
    raw = die(props(), "q1", "expired", "", 1)
    raw = die(raw, "q1", "rejected", "dlx", 2)
    raw = die(raw, "q2", "expired", "dlx", 3)
    assert [(d.queue, d.reason) for d in death_history(raw, True)] == [
        ("q2", "expired"), ("q1", "rejected"), ("q1", "expired"),
    ]  # fmt: skip
    assert not is_automatic_cycle(raw, "q1")


def test_publisher_x_death_does_not_make_a_cycle() -> None:
    out = die(props(client_death_headers()), "q2", "expired", "", 1, ours=False)
    assert not is_automatic_cycle(out, "q1")


# ------------------------------------------------ everything else survives
def _fixed(kind: bytes, fmt: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: kind + struct.pack(fmt, v))


_scalars = st.one_of(
    _fixed(b"b", ">b", st.integers(-128, 127)),
    _fixed(b"B", ">B", st.integers(0, 255)),
    _fixed(b"s", ">h", st.integers(-(2**15), 2**15 - 1)),
    _fixed(b"u", ">H", st.integers(0, 2**16 - 1)),
    _fixed(b"I", ">i", st.integers(-(2**31), 2**31 - 1)),
    _fixed(b"i", ">I", st.integers(0, 2**32 - 1)),
    _fixed(b"l", ">q", st.integers(-(2**63), 2**63 - 1)),
    _fixed(b"T", ">Q", st.integers(0, 2**64 - 1)),
    st.binary(min_size=4, max_size=4).map(lambda b: b"f" + b),  # any float bits, NaN too
    st.binary(min_size=8, max_size=8).map(lambda b: b"d" + b),
    st.binary(min_size=5, max_size=5).map(lambda b: b"D" + b),  # decimal: scale + value
    st.sampled_from([b"t\x00", b"t\x01", b"V"]),
    st.binary(max_size=12).map(lambda b: sized(b"S", b)),  # not always UTF-8
    st.binary(max_size=12).map(lambda b: sized(b"x", b)),
)
_names = st.binary(max_size=10).filter(lambda n: n not in DEATH_KEYS)


def _tables(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    pairs = st.lists(st.tuples(_names, values), max_size=5, unique_by=lambda p: p[0])
    return pairs.map(lambda ps: b"".join(entry(n, v) for n, v in ps))


_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda vs: sized(b"A", b"".join(vs))),
        _tables(inner).map(lambda t: sized(b"F", t)),
    ),
    max_leaves=12,
)
_shortstr = st.binary(max_size=20).map(short)
# Basic's properties in wire order: (flag, strategy for its bytes).
_PROPERTY_PARTS = [
    (0x8000, _shortstr), (0x4000, _shortstr),
    (HEADERS, _tables(_values).map(lambda t: struct.pack(">I", len(t)) + t)),
    (0x1000, st.binary(min_size=1, max_size=1)), (0x0800, st.binary(min_size=1, max_size=1)),
    (0x0400, _shortstr), (0x0200, _shortstr),
    (EXPIRATION, st.one_of(st.integers(0, 2**32).map(lambda n: short(str(n).encode())), _shortstr)),
    (0x0080, _shortstr), (0x0040, st.binary(min_size=8, max_size=8)),
    (0x0020, _shortstr), (0x0010, _shortstr), (0x0008, _shortstr), (0x0004, _shortstr),
]  # fmt: skip


@st.composite
def property_parts(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    return [(flag, draw(part)) for flag, part in _PROPERTY_PARTS if draw(st.booleans())]


@settings(max_examples=300, deadline=None)
@given(
    parts=property_parts(),
    ours=st.booleans(),
    reason=st.sampled_from(REASONS),
    now_s=st.integers(0, 2**40),
    queue=st.text(max_size=10),
)
def test_other_properties_and_headers_keep_their_bytes(
    parts: list[tuple[int, bytes]], ours: bool, reason: str, now_s: int, queue: str
) -> None:
    flags = sum(flag for flag, _ in parts)
    raw = struct.pack(">H", flags) + b"".join(p for _, p in parts)
    assert check_properties(raw)
    out = die(raw, queue, reason, "ex", now_s, ours=ours)
    assert check_properties(out)

    assert struct.unpack_from(">H", out)[0] == (flags | HEADERS) & ~EXPIRATION
    before = b"".join(p for f, p in parts if f > HEADERS)
    after = b"".join(p for f, p in parts if f < HEADERS and f != EXPIRATION)
    old_table = dict(parts).get(HEADERS, b"\0\0\0\0")[4:]
    assert out[2 : 2 + len(before)] == before
    pos = 2 + len(before)
    size = struct.unpack_from(">I", out, pos)[0]
    new_table = out[pos + 4 : pos + 4 + size]
    assert out[pos + 4 + size :] == after
    # The publisher's entries first, byte for byte, then the death headers.
    assert new_table.startswith(old_table)
    added = parse_table(new_table[len(old_table) :])
    assert list(added) == [n.decode() for n in sorted(DEATH_KEYS)]
    assert death_history(out, True) == [
        Death(queue, reason, 1, now_s, "ex", ("rk",), _expiration(dict(parts)))
    ]


def _expiration(parts: dict[int, bytes]) -> str | None:
    raw = parts.get(EXPIRATION)
    if raw is None:
        return None
    text = raw[1:]
    if text.isdigit() or text[:1] in (b"+", b"-") and text[1:].isdigit():
        return str(int(text))
    return text.decode("utf-8", "surrogateescape")


def test_values_survive_as_the_codec_reads_them() -> None:
    nested = sized(
        b"F",
        entry(b"n", b"l" + struct.pack(">q", -(2**40)))
        + entry(b"t", b"T" + struct.pack(">Q", 1_600_000_000)),
    )
    raw = props(table(
        (b"int8", b"b\x80"), (b"uint32", b"i\xff\xff\xff\xff"), (b"dec", b"D\x02\x00\x00\x30\x39"),
        (b"bytes", sized(b"x", b"\x00\xff")), (b"latin", S(b"caf\xe9")), (b"nested", nested),
        (b"arr", A(b"t\x01", b"V", S(b"s"))),
    ))  # fmt: skip
    before = decode_properties(raw).headers
    after = decode_properties(die(raw, "q", "expired", "", 1)).headers
    assert {k: v for k, v in after.items() if k.encode() not in DEATH_KEYS} == before
