"""Exceptions raised by midseg for bad input and domain problems.

Every class derives from :class:`MidsegError`; the ones about bad input also
derive from :class:`ValueError` so callers may catch either.
"""


class MidsegError(Exception):
    """Base class of every error midseg raises on purpose."""


class InvalidInputError(MidsegError, ValueError):
    """An argument has the wrong shape, type, range or content."""


class ImageReadError(MidsegError, OSError):
    """An image file or DICOM series could not be read."""


class GeometryMismatchError(InvalidInputError):
    """Two images, or an image and stored clicks, do not share a geometry."""


class ModelError(MidsegError):
    """A model could not be found, loaded or does not fit the image."""


class ModelMismatchWarning(UserWarning):
    """Stored clicks are replayed with other weights than they were made with."""
