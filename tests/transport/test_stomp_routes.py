"""The route book: which frame to a RabbitMQ reply queue declares it, refreshes it, or goes around it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.transport.stomp.routes import Route, RouteBook, around_wire_name, queue_of_refusal

Q = reply_queue("5")


def test_first_frame_declares_and_a_fresh_name_stays_declared() -> None:
    book = RouteBook(lease=10)
    assert book.route(Q, 0.0) is Route.DECLARE
    book.sent(Q, 0.0)
    assert book.route(Q, 4.9) is Route.DECLARE


def test_a_name_declared_half_a_lease_ago_is_refreshed() -> None:
    book = RouteBook(lease=10)
    book.sent(Q, 0.0)
    book.sent(Q, 4.0)  # a later SEND declares nothing, so it renews nothing
    assert book.route(Q, 5.0) is Route.REFRESH
    book.refreshed(Q, 5.0, foreign=False)
    assert book.route(Q, 9.0) is Route.DECLARE


def test_an_ended_subscription_renews_the_lease() -> None:
    book = RouteBook(lease=10)
    book.sent(Q, 0.0)
    book.renewed(Q, 4.0)
    assert book.route(Q, 8.0) is Route.DECLARE


def test_refused_queues_go_around_until_rechecked_and_survive_a_reconnect() -> None:
    book = RouteBook(lease=10)
    book.refused(Q.name, 0.0)
    book.reconnected()
    assert book.route(Q, 1.0) is Route.AROUND
    assert book.route(Q, 5.0) is Route.REFRESH
    book.refreshed(Q, 5.0, foreign=False)  # it expired, and was declared again with our arguments
    assert book.route(Q, 6.0) is Route.DECLARE


def test_a_reconnect_forgets_what_the_old_connection_declared() -> None:
    book = RouteBook(lease=10)
    book.sent(Q, 0.0)
    book.reconnected()
    assert book.route(Q, 100.0) is Route.DECLARE


def test_permanent_queues_never_expire() -> None:
    book = RouteBook(lease=10)
    for queue in (PACKAGE_REQUESTS, DEAD_LETTER):
        book.sent(queue, 0.0)
        assert book.route(queue, 1e9) is Route.DECLARE


@given(lease=st.integers(1, 100_000), sent=st.floats(0, 1e6), later=st.floats(0, 1))
def test_never_refreshed_within_half_a_lease(lease: int, sent: float, later: float) -> None:
    book = RouteBook(lease=lease)
    book.sent(Q, sent)
    assert book.route(Q, sent + later * lease / 2 * 0.999) is Route.DECLARE
    assert book.route(Q, sent + lease) is Route.REFRESH


def test_refusal_text_names_the_queue() -> None:
    text = (
        "precondition_failed PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'ns/package/5' in vhost '/'"
    )
    assert queue_of_refusal(text) == "ns/package/5"
    assert queue_of_refusal("NOT_FOUND - no queue 'package/5'") is None
    assert around_wire_name(reply_queue("5")) == "/amq/queue/package%2F5"


def test_a_confirmed_declare_starts_a_lease_that_a_plain_send_does_not() -> None:
    book = RouteBook(lease=10)
    book.sent(Q, 0.0)  # an unconfirmed frame: maybe refused, so no lease to skip a declare on
    assert not book.declared_lately(Q, 1.0)
    other = reply_queue("6")
    book.refreshed(other, 2.0, foreign=False)  # declared elsewhere, never sent to on this connection
    assert book.declared_lately(other, 6.9)
    assert book.route(other, 6.9) is Route.DECLARE
    assert not book.declared_lately(other, 7.0)
    assert book.route(other, 7.0) is Route.REFRESH


def test_a_foreign_or_forgotten_queue_has_no_lease() -> None:
    book = RouteBook(lease=10)
    book.refreshed(Q, 0.0, foreign=True)
    assert not book.declared_lately(Q, 0.1)
    assert book.route(Q, 0.1) is Route.AROUND
    book.refreshed(Q, 1.0, foreign=False)
    assert book.declared_lately(Q, 1.1)
    book.reconnected()
    assert not book.declared_lately(Q, 1.2)


@given(
    lease=st.integers(min_value=1, max_value=10**6),
    at=st.floats(min_value=0, max_value=1e6),
    later=st.floats(min_value=0, max_value=1e6),
)
def test_lease_holds_exactly_half_the_ttl(lease: int, at: float, later: float) -> None:
    book = RouteBook(lease=lease)
    book.refreshed(Q, at, foreign=False)
    assert book.declared_lately(Q, at + later) == (later < lease / 2)
