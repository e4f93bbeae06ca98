"""The hotline's own exceptions; vendor errors are translated into these at the edges.

HotlineError
├── SettingsError          a configuration variable is missing or malformed
├── UserError              something a caller, engineer or operator typed is wrong
│   ├── InvalidRequestNumber   not digits, wrong length or wrong check digit
│   ├── UnknownRequest         a valid number that names no request
│   ├── IllegalTransition      a status change the lifecycle does not allow
│   └── NotFound               another record that does not exist
└── StorageError           a file could not be stored or read
"""


class HotlineError(Exception):
    """Base of every error the hotline raises on purpose."""


class SettingsError(HotlineError):
    """A configuration variable is missing or malformed; the message names it."""


class UserError(HotlineError):
    """Input from a person is wrong; the message is safe to show them."""


class InvalidRequestNumber(UserError):
    """A request number that is not well-formed or fails its check digit."""


class UnknownRequest(UserError):
    """A well-formed request number that names no request."""


class IllegalTransition(UserError):
    """A status change that the request lifecycle does not allow."""


class NotFound(UserError):
    """A record (call, attachment, user) that does not exist."""


class StorageError(HotlineError):
    """A file in the data directory could not be written or read."""
