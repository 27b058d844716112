"""The in-memory wing (``inmemory://``): a broker inside one process, for tests and single-process demos.

Standard library only. Users' tests import it through :mod:`tdm_messaging.testing`.
"""
