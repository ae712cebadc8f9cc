"""The one exception conversion raises for bad input; the CLI prints its message, no traceback."""


class ConvertError(Exception):
    """Conversion cannot go on; the message says what is wrong and with which file."""
