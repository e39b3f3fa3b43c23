"""One exception type for every failure a user can cause.

The console script turns it into a one-line message and an exit code instead of
a traceback; anything else escaping is a bug in noseprint.
"""


class NoseprintError(Exception):
    """A failure caused by input or environment, with a message meant for a person."""

    exit_code = 2


class UsageError(NoseprintError):
    """Bad arguments or unusable input files (exit 2)."""

    exit_code = 2


class ProvingFailed(NoseprintError):
    """EZKL could not prove valid-looking input (exit 3): not the user's typing, not a forged bundle."""

    exit_code = 3
