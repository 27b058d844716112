"""The native SQLite wing: queues in one file shared by processes, over the standard library's sqlite3.

:class:`~tdm_messaging.transport.sqlite.backend.SqliteTransport` is loaded by the registry for
``sqlite://`` URLs; no module here needs a driver.
"""
