"""Sample data for the reference server: a generator of synthetic theses and a loader of real ones."""

from examples.sampledata.generate import generate_documents
from examples.sampledata.load import LoadError, read_directory

__all__ = ["LoadError", "generate_documents", "read_directory"]
