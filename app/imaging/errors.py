"""The errors that image handling raises; the API maps each one to an HTTP status."""


class ImageError(ValueError):
    """Base class: the bytes cannot become a model input."""

    status_code = 422


class UnsupportedFormatError(ImageError):
    """The bytes are not an image format we accept (judged by magic bytes)."""

    status_code = 415


class CorruptImageError(ImageError):
    """The bytes claim a supported format but cannot be decoded."""

    status_code = 422


class ImageTooLargeError(ImageError):
    """The declared pixel count is over the limit (decompression-bomb guard)."""

    status_code = 413


class UnsupportedImageError(ImageError):
    """A decodable image we still cannot use (for example a multi-frame DICOM)."""

    status_code = 422
