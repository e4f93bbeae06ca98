"""The hotline's own exceptions; vendor errors are translated into these at the edges.

HotlineError               exit status 1: failed (restarted by systemd, as a crash is)
├── SettingsError          a configuration variable is missing or malformed: 78, not restarted
├── Unavailable            something the hotline needs is down for now: 3, restarted
├── UserError              something a caller, engineer or operator typed is wrong
│   ├── InvalidRequestNumber   not digits, wrong length or wrong check digit
│   ├── UnknownRequest         a valid number that names no request
│   ├── IllegalTransition      a status change the lifecycle does not allow
│   └── NotFound               another record that does not exist
└── StorageError           a file could not be stored or read

`hotline.cli.main` ends a command with the `exit_status` of the error that stopped it;
the units in deploy/systemd restart on every status but EX_CONFIG. Other modules add
their own: `DatabaseUnavailable` (3) and `DatabaseMisconfigured` (78) in hotline.db,
`QueueUnavailable` (3) and `QueueMisconfigured` (78) in hotline.jobs.
"""

#: Failed: a bug, a crash, a child that died, a port in use (also Python's own status
#: for an uncaught exception). systemd starts the service again.
EXIT_FAILED = 1
#: A server (the database, Redis) or the data dir's file system is down for now: it
#: will come back, so systemd starts the service again.
EXIT_UNAVAILABLE = 3
#: EX_CONFIG of sysexits.h: a setting, a password, a file's owner is wrong. A restart
#: does not cure it (RestartPreventExitStatus=78); the one line says what to fix.
EX_CONFIG = 78


class HotlineError(Exception):
    """Base of every error the hotline raises on purpose."""

    exit_status = EXIT_FAILED


class SettingsError(HotlineError):
    """A configuration variable is missing or malformed; the message names it."""

    exit_status = EX_CONFIG


class Unavailable(HotlineError):
    """Something the hotline needs (a server, the data dir's mount) is down for now."""

    exit_status = EXIT_UNAVAILABLE


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
