"""Validation: every problem at once, each as `file:line: key.path: message`."""

from __future__ import annotations

import pytest

from warrenmq.broker.topology import Problem, TopologyError, load, validate_definitions


def problems(text: str, file: str = "t.yaml") -> list[str]:
    with pytest.raises(TopologyError) as info:
        load(file, text=text)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def one(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_problem_text() -> None:
    assert str(Problem("f.yaml", 3, "queues[0].ttl", "bad")) == "f.yaml:3: queues[0].ttl: bad"
    assert (
        str(Problem("<definitions>", None, "queues[0]", "bad")) == "<definitions>: queues[0]: bad"
    )


# ------------------------------------------------------------------ syntax
def test_yaml_syntax_error_gives_the_line_of_the_error() -> None:
    text = "queues:\n  - name: a\n  - name: [b\n    durable: true\nexchanges: {\n"
    found = one(text)
    assert found.startswith("t.yaml:4: not valid YAML: expected ',' or ']'")


def test_tab_indentation_is_a_syntax_error_at_its_line() -> None:
    assert one("queues:\n\t- name: a\n").startswith("t.yaml:2: not valid YAML")


def test_duplicate_keys_are_problems() -> None:
    assert one("queues:\n  - name: a\n    durable: true\n    durable: false\n") == (
        "t.yaml:4: queues[0].durable: duplicate key (first at line 3)"
    )


# ------------------------------------------------------- types, keys, units
def test_unknown_key_suggests_the_closest() -> None:
    assert one("queues:\n  - name: a\n    duable: true\n") == (
        "t.yaml:3: queues[0].duable: unknown key 'duable' (did you mean 'durable'?)"
    )
    assert one("exchange:\n  - name: a\n") == (
        "t.yaml:1: exchange: unknown key 'exchange' (did you mean 'exchanges'?)"
    )


def test_wrong_types() -> None:
    found = problems(
        "queues:\n"
        "  - name: a\n"
        "    durable: yes please\n"
        "  - 42\n"
        "exchanges: {name: x}\n"
        "vhosts:\n"
        "  - name: v\n"
        "    tags: 5\n"
    )
    assert found == [
        "t.yaml:3: queues[0].durable: must be true or false, not 'yes please'",
        "t.yaml:4: queues[1]: must be a mapping of keys, not an integer",
        "t.yaml:5: exchanges: must be a list, not a mapping",
        "t.yaml:8: vhosts[0].tags: must be a list of strings, not 5",
    ]


def test_bad_units() -> None:
    found = problems("queues:\n  - name: a\n    ttl: soon\n    max-length-bytes: 1.5 B\n")
    assert found == [
        "t.yaml:3: queues[0].ttl: must be a duration such as 30s or 500ms, not 'soon'",
        "t.yaml:4: queues[0].max-length-bytes: must be a size such as 1048576, 512KB or 1GiB "
        "(a whole number of bytes), not '1.5 B'",
    ]


def test_bad_choices() -> None:
    found = problems(
        "exchanges:\n  - name: x\n    type: fnout\nqueues:\n  - name: q\n    type: lazy\n"
    )
    assert found[0].startswith("t.yaml:3: exchanges[0].type: must be one of direct, fanout, ")
    assert found[0].endswith("not 'fnout'")
    assert (
        found[1] == "t.yaml:6: queues[0].type: must be one of classic, quorum, stream, not 'lazy'"
    )


def test_friendly_key_and_argument_must_agree() -> None:
    text = "queues:\n  - name: q\n    ttl: 30s\n    arguments:\n      x-message-ttl: 1000\n"
    assert (
        one(text) == "t.yaml:3: queues[0].ttl: 30000 conflicts with arguments.x-message-ttl: 1000"
    )
    same = "queues:\n  - name: q\n    ttl: 1s\n    arguments:\n      x-message-ttl: 1000\n"
    assert load("t.yaml", text=same).definitions["queues"][0]["arguments"] == {
        "x-message-ttl": 1000
    }


def test_exclusive_queues_are_refused_with_the_reason() -> None:
    found = one("queues:\n  - name: q\n    exclusive: true\n")
    assert found.startswith(
        "t.yaml:3: queues[0].exclusive: a topology cannot declare an exclusive queue"
    )
    assert "belongs to the connection" in found


def test_reserved_names() -> None:
    assert one("exchanges:\n  - name: amq.mine\n") == (
        "t.yaml:2: exchanges[0].name: 'amq.mine' starts with 'amq.', which is reserved for the "
        "broker's exchanges"
    )


# ------------------------------------------------------------ missing keys
def test_missing_required_keys() -> None:
    found = problems(
        "queues:\n"
        "  - durable: true\n"
        "bindings:\n"
        "  - to: q\n"
        "  - from: amq.direct\n"
        "permissions:\n"
        "  - {user: u, vhost: /, write: '.*', read: '.*'}\n"
        "users:\n"
        "  - name: u\n"
        "retry:\n"
        "  - queue: w\n"
        "    then: p\n"
    )
    assert found == [
        "t.yaml:2: queues[0].name: required key is missing",
        "t.yaml:4: bindings[0].from: required key is missing",
        "t.yaml:5: bindings[1].to: required key is missing",
        "t.yaml:7: permissions[0].configure: required key is missing",
        "t.yaml:9: users[0].password: one of password or password_hash is required",
        "t.yaml:11: retry[0].delays: required key is missing",
    ]


def test_both_destinations_is_a_problem() -> None:
    text = "queues: [{name: q}]\nexchanges: [{name: x}]\nbindings:\n  - {from: amq.direct, to: q, to-exchange: x}\n"
    assert (
        one(text)
        == "t.yaml:4: bindings[0].to-exchange: give either to (a queue) or to-exchange, not both"
    )


# ---------------------------------------------------------- references
def test_unknown_exchange_in_a_binding() -> None:
    text = (
        "exchanges:\n  - name: orders\nqueues:\n  - name: q\n"
        "bindings:\n"
        "  - from: ordres\n    to: q\n"
        "  - from: orders\n    to-exchange: audit\n"
        "  - from: amq.fanout\n    to: q\n"
    )
    assert problems(text) == [
        "t.yaml:6: bindings[0].from: unknown exchange 'ordres' in vhost '/' (did you mean 'orders'?)",
        "t.yaml:9: bindings[1].to-exchange: unknown exchange 'audit' in vhost '/'",
    ]


def test_unknown_queue_in_a_binding() -> None:
    text = "queues:\n  - name: orders\nbindings:\n  - from: amq.direct\n    to: order\n"
    assert (
        one(text)
        == "t.yaml:5: bindings[0].to: unknown queue 'order' in vhost '/' (did you mean 'orders'?)"
    )


def test_exchanges_and_queues_belong_to_their_vhost() -> None:
    text = (
        "vhosts: [{name: a}, {name: b}]\n"
        "queues:\n  - {name: q, vhost: a}\n"
        "bindings:\n  - {vhost: b, from: amq.direct, to: q}\n"
    )
    assert one(text) == "t.yaml:5: bindings[0].to: unknown queue 'q' in vhost 'b'"


def test_unknown_vhost() -> None:
    text = "vhosts:\n  - name: shop\nqueues:\n  - name: q\n    vhost: shp\n"
    assert one(text) == (
        "t.yaml:5: queues[0].vhost: unknown vhost 'shp' (did you mean 'shop'?): declare it under "
        "vhosts ('/' exists anyway)"
    )


def test_dead_letter_exchange_that_points_nowhere() -> None:
    text = "queues:\n  - name: q\n    dead-letter-exchange: dlx\n  - name: r\n    dead-letter-exchange: ''\n"
    assert one(text) == (
        "t.yaml:3: queues[0].dead-letter-exchange: names no exchange of vhost '/': "
        "dead-lettered messages would be dropped"
    )


def test_dead_letter_exchange_in_arguments_points_at_the_argument() -> None:
    text = "queues:\n  - name: q\n    arguments:\n      x-dead-letter-exchange: amq.direkt\n"
    assert one(text).startswith(
        "t.yaml:4: queues[0].arguments.x-dead-letter-exchange: names no exchange of vhost '/' "
        "(did you mean 'amq.direct'?)"
    )


def test_alternate_exchange_that_points_nowhere() -> None:
    text = "exchanges:\n  - name: x\n    alternate-exchange: unrouted\n"
    assert one(text) == (
        "t.yaml:3: exchanges[0].alternate-exchange: names no exchange of vhost '/': "
        "unroutable messages would be dropped"
    )


def test_permission_for_unknown_user_or_vhost() -> None:
    text = (
        "users:\n  - {name: app, password: x}\n"
        "permissions:\n"
        "  - {user: ap, vhost: /, configure: '', write: '', read: ''}\n"
        "  - {user: app, vhost: nowhere, configure: '', write: '', read: ''}\n"
        "  - {user: app, vhost: /, configure: '(', write: '', read: ''}\n"
    )
    found = problems(text)
    assert (
        found[0]
        == "t.yaml:4: permissions[0].user: unknown user 'ap' (did you mean 'app'?): declare it under users"
    )
    assert found[1].startswith("t.yaml:5: permissions[1].vhost: unknown vhost 'nowhere'")
    assert found[2].startswith(
        "t.yaml:6: permissions[2].configure: is not a valid regular expression"
    )
    assert len(found) == 3


def test_binding_the_default_exchange_is_refused() -> None:
    text = (
        "queues: [{name: q}]\n"
        "bindings:\n"
        "  - {from: '', to: q}\n"
        "  - {from: amq.default, to: q}\n"
        "  - {from: amq.direct, to-exchange: amq.default}\n"
    )
    found = problems(text)
    assert found[0].startswith("t.yaml:3: bindings[0].from: cannot bind the default exchange")
    assert found[1].startswith("t.yaml:4: bindings[1].from: cannot bind the default exchange")
    assert found[2] == "t.yaml:5: bindings[2].to-exchange: cannot bind to the default exchange"


# ---------------------------------------------------------- argument values
def test_wrong_argument_values_follow_the_broker() -> None:
    text = (
        "queues:\n"
        "  - name: q\n"
        "    arguments:\n"
        "      x-max-length: ten\n"
        "      x-message-ttl: -1\n"
        "      x-expires: 0\n"
        "      x-max-priority: 256\n"
        "      x-single-active-consumer: 1\n"
        "      x-unknown-to-us: anything\n"
        "  - name: r\n"
        "    overflow: sometimes\n"
        "    dead-letter-routing-key: k\n"
        "    max-length: 1.5\n"
    )
    assert problems(text) == [
        "t.yaml:4: queues[0].arguments.x-max-length: must be a whole number, not a string ('ten')",
        "t.yaml:5: queues[0].arguments.x-message-ttl: must not be negative, not -1",
        "t.yaml:6: queues[0].arguments.x-expires: must be at least 1 millisecond",
        "t.yaml:7: queues[0].arguments.x-max-priority: must be at most 255, not 256",
        "t.yaml:8: queues[0].arguments.x-single-active-consumer: must be true or false, not 1",
        "t.yaml:11: queues[1].overflow: must be one of drop-head, reject-publish, reject-publish-dlx, "
        "not 'sometimes'",
        "t.yaml:12: queues[1].dead-letter-routing-key: needs a dead-letter-exchange (a routing key "
        "alone is refused by the broker)",
        "t.yaml:13: queues[1].max-length: must be a whole number, not a number (1.5)",
    ]


def test_exchange_and_binding_arguments_follow_the_exchange_type() -> None:
    text = (
        "exchanges:\n"
        "  - {name: h, type: headers}\n"
        "  - {name: later, type: x-delayed-message}\n"
        "  - {name: hash, type: x-consistent-hash}\n"
        "queues: [{name: q}]\n"
        "bindings:\n"
        "  - {from: h, to: q, arguments: {x-match: some}}\n"
        "  - {from: hash, to: q, routing-key: heavy}\n"
    )
    found = problems(text)
    assert (
        found[0]
        == "t.yaml:3: exchanges[1].arguments.x-delayed-type: an x-delayed-message exchange needs a delayed-type"
    )
    assert found[1].startswith(
        "t.yaml:7: bindings[0].arguments: refused by exchange 'h': Invalid x-match"
    )
    assert found[2].startswith("t.yaml:8: bindings[1].routing-key: refused by exchange 'hash': ")
    assert len(found) == 3


def test_delayed_type_only_for_delayed_exchanges() -> None:
    assert one("exchanges:\n  - {name: x, delayed-type: direct}\n") == (
        "t.yaml:2: exchanges[0].delayed-type: applies only to exchanges of type x-delayed-message"
    )


# ---------------------------------------------------------- declared twice
def test_declared_twice_with_other_settings_names_both_lines() -> None:
    text = (
        "queues:\n"
        "  - name: q\n"
        "    ttl: 1s\n"
        "  - name: q\n"
        "    ttl: 2s\n"
        "exchanges:\n"
        "  - {name: x, type: fanout}\n"
        "  - {name: x, type: topic}\n"
    )
    assert problems(text) == [
        "t.yaml:4: queues[1]: queue 'q' in vhost '/' is declared again with other settings than at "
        "line 2 (queues[0]): arguments.x-message-ttl: 1000 vs 2000",
        "t.yaml:8: exchanges[1]: exchange 'x' in vhost '/' is declared again with other settings than "
        'at line 7 (exchanges[0]): type: "fanout" vs "topic"',
    ]


# ---------------------------------------------------------- dead-letter loops
LOOP = """\
exchanges:
  - {name: a.dlx, type: fanout}
  - {name: b.dlx, type: direct}
queues:
  - name: a
    ttl: 1s
    dead-letter-exchange: a.dlx
  - name: b
    ttl: 1m
    dead-letter-exchange: b.dlx
    dead-letter-routing-key: to-a
bindings:
  - {from: a.dlx, to: b}
  - {from: b.dlx, to: a, routing-key: to-a}
"""


def test_a_loop_of_expiring_queues_is_named() -> None:
    assert one(LOOP) == (
        "t.yaml:7: queues[0].dead-letter-exchange: dead-letter loop a -> b -> a in vhost '/': every "
        "queue in it expires its messages (message TTL) into the next, so a message nobody consumes "
        "goes round until the broker drops it as a dead-letter cycle"
    )


def test_no_loop_when_the_routing_key_leads_elsewhere() -> None:
    load("t.yaml", text=LOOP.replace("routing-key: to-a}", "routing-key: elsewhere}"))


def test_no_loop_when_a_queue_of_the_circle_has_no_ttl() -> None:
    load("t.yaml", text=LOOP.replace("    ttl: 1m\n", ""))


def test_a_loop_through_an_alternate_exchange_and_topic_matching() -> None:
    text = (
        "exchanges:\n"
        "  - {name: dl, type: topic, alternate-exchange: rest}\n"
        "  - {name: rest, type: fanout}\n"
        "queues:\n"
        "  - {name: one, ttl: 5s, dead-letter-exchange: dl, dead-letter-routing-key: x.y}\n"
        "  - {name: two, ttl: 5s, dead-letter-exchange: dl, dead-letter-routing-key: z}\n"
        "bindings:\n"
        "  - {from: dl, to: two, routing-key: 'x.*'}\n"
        "  - {from: rest, to: one}\n"
    )
    assert "dead-letter loop one -> two -> one in vhost '/'" in one(text)
    # With a binding for z, `two` no longer reaches the alternate exchange: no loop.
    load(
        "t.yaml",
        text=text.replace("bindings:", "  - {name: three}\nbindings:")
        + "  - {from: dl, to: three, routing-key: '#.z'}\n",
    )


def test_a_queue_expiring_into_itself_through_the_default_exchange() -> None:
    text = "queues:\n  - {name: q, ttl: 1s, dead-letter-exchange: ''}\n"
    assert "dead-letter loop q -> q" in one(text)
    load(
        "t.yaml",
        text="queues:\n  - {name: q, ttl: 1s, dead-letter-exchange: '', dead-letter-routing-key: p}\n  - {name: p}\n",
    )


def test_the_retry_ladder_is_not_a_loop() -> None:
    topology = load("t.yaml", text="retry:\n  - {queue: work, delays: [1s, 5s], then: parked}\n")
    assert len(topology.definitions["queues"]) == 4


# ---------------------------------------------------------- all at once
def test_every_problem_is_reported_in_one_go_in_line_order() -> None:
    text = (
        "queues:\n"
        "  - name: q\n"
        "    ttl: soon\n"
        "    dead-letter-exchange: gone\n"
        "bindings:\n"
        "  - {from: nowhere, to: q}\n"
        "  - {from: amq.direct, to: nobody}\n"
        "permissions:\n"
        "  - {user: ghost, vhost: /, configure: '', write: '', read: ''}\n"
    )
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["3", "4", "6", "7", "9"]


def test_validate_definitions_of_a_dict() -> None:
    doc = {
        "queues": [{"name": "q", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-max-length": "ten"}}],
        "bindings": [{"source": "x", "vhost": "/", "destination": "q", "destination_type": "queue",
                      "routing_key": "", "arguments": {}}],
    }  # fmt: skip
    found = [str(p) for p in validate_definitions(doc, file="live+file")]
    assert found == [
        "live+file: queues[0].arguments.x-max-length: must be a whole number, not a string ('ten')",
        "live+file: bindings[0].source: unknown exchange 'x' in vhost '/'",
    ]
    assert validate_definitions({"queues": [{"name": "q", "vhost": "/"}]}) == []


def test_definitions_document_problems_point_at_json_lines() -> None:
    text = '{\n  "rabbit_version": "3.10.8",\n  "queues": [\n    {"name": "q", "vhost": "/", "durabel": true}\n  ]\n}\n'
    assert (
        one(text) == "t.yaml:4: queues[0].durabel: unknown key 'durabel' (did you mean 'durable'?)"
    )
