"""URL_CHECK's tests: unit tests of its parts, and runs through the API and the worker."""
