"""End-to-end tests: the reference server and packager as real processes, driven through HTTP."""
