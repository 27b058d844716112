"""Reference applications built on tdm_messaging: the TDM API server, the packager, sample data."""
