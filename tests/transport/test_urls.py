"""The one URL redactor: no password of any URL, failover lists included, survives into a message."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.transport.urls import redact_url, scrub

# Passwords as they appear in a URL: any Unicode, percent-encoded where a URL needs it.
PASSWORDS = st.text(min_size=1, max_size=40).map(lambda raw: quote(raw, safe="")).filter(lambda p: len(p) >= 4)
HOSTS = st.sampled_from(["mq1", "mq2.example", "127.0.0.1", "[::1]"])


@given(passwords=st.lists(PASSWORDS, min_size=1, max_size=3), host=HOSTS)
def test_every_password_of_a_failover_list_is_hidden(passwords: list[str], host: str) -> None:
    url = ";".join(f"amqp://user:{password}@{host}:{5672 + i}//" for i, password in enumerate(passwords))
    shown = redact_url(url)
    assert shown.count(":***@") == len(passwords)
    assert all(f":{password}@" not in shown for password in passwords)
    assert shown.count(";") == url.count(";") and host in shown


@given(password=PASSWORDS)
def test_a_stomp_node_list_keeps_its_nodes_and_hides_its_password(password: str) -> None:
    url = f"stomp://guest:{password}@mq1:61613,mq2:61614/?dialect=rabbitmq"
    assert redact_url(url) == "stomp://guest:***@mq1:61613,mq2:61614/?dialect=rabbitmq"


@given(password=PASSWORDS, noise=st.text(max_size=60))
def test_scrub_masks_the_password_wherever_a_driver_quoted_it(password: str, noise: str) -> None:
    url = f"amqp://user:{password}@h1//;amqp://user:{password}x@h2//"
    text = f"{noise} could not log in as user/{password} at {url} ({password}x)"
    assert password not in scrub(text, url)


def test_urls_without_a_password_and_broken_urls() -> None:
    assert redact_url("memory://") == "memory://"
    assert redact_url("sqlite:////var/tdm/broker.db") == "sqlite:////var/tdm/broker.db"
    assert "secret" not in redact_url("amqp://u:secret@[::1:5672//")  # unparsable: credentials dropped
