"""The STOMP wing (stomp.py, for RabbitMQ and ActiveMQ): only ``backend`` and what it imports load the driver.

This package itself is pure, so ``tdm_messaging`` can re-export :class:`Dialect` without stomp.py
installed; :class:`~tdm_messaging.transport.stomp.backend.StompTransport` is loaded by the registry.
"""

from tdm_messaging.transport.stomp.dialect import Dialect, from_wire_name, to_wire_name

__all__ = ["Dialect", "from_wire_name", "to_wire_name"]
