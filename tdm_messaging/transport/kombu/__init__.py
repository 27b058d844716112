"""The kombu wing (AMQP, Redis, kombu's SQLAlchemy and memory transports): imports no driver itself.

:class:`~tdm_messaging.transport.kombu.backend.KombuTransport` (and every module it imports) needs
kombu; the registry loads it only when a URL names one of its schemes.
"""
