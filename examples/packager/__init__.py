"""The reference packager: takes package requests from the broker, bags a docset's texts into a zip, stores it."""
