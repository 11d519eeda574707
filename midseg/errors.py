"""Exceptions raised by midseg for bad input and domain problems.

Every error derives from :class:`MidsegError`; the ones about bad input also
derive from :class:`ValueError` so callers may catch either. Every warning
derives from :class:`MidsegWarning` (a :class:`UserWarning`).
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


class MidsegWarning(UserWarning):
    """Base class of every warning midseg issues: the result is made, but may not be right."""


class ModelMismatchWarning(MidsegWarning):
    """Stored clicks are replayed with other weights than they were made with."""


class OlderClicksWarning(MidsegWarning):
    """A clicks file of an older version is replayed with the settings of its time; the
    session's further rounds use them too (a new `Session` uses today's defaults)."""


class CoplanarPointsWarning(MidsegWarning):
    """All margin points of a 3D image lie in one plane: the object's extent across it is unknown."""


class ConstantImageWarning(MidsegWarning):
    """The image (or the region the margin points span) has one value: nothing to segment."""


class ChannelsWarning(MidsegWarning):
    """A multi-channel image's channels do not look like what the chosen model expects
    (the PET/CT models: channel 0 CT in HU, channel 1 PET in SUV)."""


class GeometryLossWarning(MidsegWarning):
    """An output file format cannot hold the image's geometry (origin, direction, spacing)."""


def show_warnings_as_lines(prog: str) -> None:
    """Print midseg's warnings as one line ``"<prog>: warning: <message>"`` on stderr, every
    time they occur (other warnings as Python prints them); with ``-W`` or
    ``PYTHONWARNINGS`` the user's filters decide which are shown. Changes the process's
    `warnings` state: call it inside ``warnings.catch_warnings()`` to undo it after, or
    once in a worker process (`midseg batch` does both)."""
    import sys
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, MidsegWarning):
            return default(message, category, filename, lineno, file, line)
        # flushed: a worker process's stderr is block-buffered, and a worker that ends
        # with its batch (os._exit) would lose the line
        print(f"{prog}: warning: {message}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show
    if not sys.warnoptions:
        warnings.simplefilter("always", MidsegWarning)  # every case, not just the first
