"""jobtrail's exceptions: one root, children that carry their data and build their own message."""

from __future__ import annotations

from collections.abc import Iterable

from jobtrail.jobs import Job
from jobtrail.states import Status


class JobtrailError(Exception):
    """The root of every error jobtrail raises."""


class SettingsError(JobtrailError, ValueError):
    """An option (argument or ``JOBTRAIL_*`` variable) has a value jobtrail cannot use."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid setting {name}={value!r}: {reason}")


class UnknownSetting(SettingsError, TypeError):
    """An option jobtrail does not have (usually a misspelt one)."""

    def __init__(self, name: str, suggestion: str | None) -> None:
        self.suggestion = suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        JobtrailError.__init__(self, f"unknown setting {name!r}{hint}")
        self.name, self.value, self.reason = name, None, "unknown"


class StoreError(JobtrailError):
    """The store could not do what was asked (the driver's error is chained, without its
    frames; credentials are masked in the message)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (a connection refused, lost or shut down):
    the same call succeeds once it is back."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the database is unavailable: {reason}")


class MissingExtra(JobtrailError, ImportError):
    """An optional part of jobtrail is used without the extra that installs its libraries."""

    def __init__(self, extra: str, feature: str, missing: Iterable[str]) -> None:
        self.extra = extra
        self.feature = feature
        self.missing = sorted(missing)
        super().__init__(
            f"{feature} needs the {extra!r} extra (missing: {', '.join(self.missing)}); "
            f"install it with: pip install 'jobtrail[{extra}]'"
        )


class InvalidData(JobtrailError):
    """The database refused a value (e.g. a NUL character, or a number out of range)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the store cannot hold this value: {reason}")


class SchemaError(StoreError):
    """The database schema is not one this version of jobtrail knows how to use."""

    def __init__(self, found: str | None, expected: str) -> None:
        self.found = found
        self.expected = expected
        if found is None:
            hint = "the database has no jobtrail schema; run `jobtrail db upgrade`"
        else:
            hint = (
                f"the database is at schema revision {found!r}, which this jobtrail does not "
                f"know (it expects {expected!r}); upgrade jobtrail or run `jobtrail db upgrade`"
            )
        super().__init__(hint)


class JobNotFound(JobtrailError):
    """No job with this id exists (or it is not visible to the caller)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")


class IllegalTransition(JobtrailError):
    """A status change the state machine does not allow, e.g. from a terminal state."""

    def __init__(self, job_id: str, current: Status, target: Status | Iterable[Status]) -> None:
        self.job_id = job_id
        self.current = current
        targets = [target] if isinstance(target, Status) else list(target)
        self.targets = targets
        names = " or ".join(str(t) for t in targets)
        super().__init__(f"job {job_id!r} is {current}; it cannot become {names}")


class ReportRefused(IllegalTransition):
    """A report (``Tracker.report``, ``PATCH``) for a job that does not run elsewhere, or that
    a runner holds right now: only its runner writes its progress and outcome."""

    def __init__(self, job_id: str, current: Status, reason: str) -> None:
        self.job_id = job_id
        self.current = current
        self.targets = []
        self.reason = reason
        JobtrailError.__init__(self, f"job {job_id!r} does not take reports: {reason}")


class ItemsNotListed(IllegalTransition):
    """A retry of only the failed items of a job that failed more items than it lists (past
    ``max_failed_items``, or counted by a reporter without naming them): the unlisted ones
    cannot be told from those that succeeded, so only a whole retry repeats them."""

    def __init__(self, job_id: str, current: Status, listed: int, failed: int) -> None:
        self.job_id = job_id
        self.current = current
        self.targets = []
        self.listed = listed
        self.failed = failed
        JobtrailError.__init__(
            self,
            f"job {job_id!r} failed {failed} items but lists only {listed}: "
            "retry it whole, not only its failed items",
        )


class TooManyJobs(JobtrailError, ValueError):
    """A bulk action given more jobs than it takes at once (``limit``)."""

    def __init__(self, matched: int, limit: int) -> None:
        self.matched = matched
        self.limit = limit
        super().__init__(
            f"{matched} jobs match; a bulk action takes at most {limit}: narrow the filter"
        )


class TooManyFilters(JobtrailError, ValueError):
    """More label filters than one listing, statistic or stream takes (``limit``)."""

    def __init__(self, given: int, limit: int) -> None:
        self.given = given
        self.limit = limit
        super().__init__(f"{given} label filters given; at most {limit} are taken at once")


class InvalidOwner(JobtrailError, ValueError):
    """An owner that names nobody (empty, or only whitespace)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        super().__init__(f"invalid owner {owner!r}: an owner must not be empty or blank")


class UnknownKind(JobtrailError):
    """A job was submitted for a kind no handler is registered for."""

    def __init__(self, kind: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.known = sorted(known)
        listed = ", ".join(self.known)
        if listed:
            super().__init__(f"unknown job kind {kind!r} (registered kinds: {listed})")
        else:  # e.g. ``jobtrail serve`` started without ``--app``
            super().__init__(
                f"unknown job kind {kind!r}: no kinds are registered in this process "
                "(start `jobtrail serve` with `--app module:tracker` to submit jobs through it)"
            )


class NotAllowed(JobtrailError):
    """The caller may not do this (e.g. create a job for another owner)."""


class KeyInUse(JobtrailError):
    """An idempotency key already names a job the caller may not see."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"the key {key!r} is already in use")


class DuplicateKey(KeyInUse):
    """``track(key=…)`` named a key that already names a job: a block run here cannot attach
    to a job recorded (and perhaps run) by someone else. ``job`` is that job."""

    def __init__(self, key: str, job: Job) -> None:
        self.key = key
        self.job = job
        JobtrailError.__init__(self, f"the key {key!r} already names job {job.id} ({job.status})")


class TokenExists(JobtrailError):
    """A token with this name exists already."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a token named {name!r} exists already")


class WebhookNotFound(JobtrailError):
    """No webhook subscription or delivery with this id (or not visible to the caller)."""

    def __init__(self, what: str, id_: str) -> None:
        self.id = id_
        super().__init__(f"{what} {id_!r} not found")


class WebhookRefused(InvalidData):
    """A subscription jobtrail will not keep: a URL it will not send to (not http(s), an
    internal address), an unknown event type, filters too large."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        JobtrailError.__init__(self, f"webhook refused: {reason}")


class UnknownSchedule(JobtrailError):
    """No schedule with this name is registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown schedule {name!r}")


class PayloadError(JobtrailError):
    """A payload does not fit the handler's signature or is not JSON."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"bad payload for {kind!r}: {reason}")


class JobTimeout(JobtrailError):
    """``wait`` gave up before the job reached a terminal state."""

    def __init__(self, job_id: str, timeout: float, status: Status) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"job {job_id!r} still {status} after {timeout:g} s")


class Interrupt(JobtrailError):
    """Raised inside a handler at a checkpoint to stop it; never recorded as an item failure."""


class Cancelled(Interrupt):
    """The job was cancelled (or the runner lost it); the handler should stop."""

    def __init__(self, job_id: str, reason: str = "cancel requested") -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id!r} cancelled: {reason}")


class TimedOut(Interrupt):
    """The job ran past its ``timeout``."""

    def __init__(self, job_id: str, timeout: float) -> None:
        self.job_id = job_id
        self.timeout = timeout
        super().__init__(f"job {job_id!r} timed out after {timeout:g} s")


class ShuttingDown(Interrupt):
    """The worker is stopping; the job goes back to the queue without charging an attempt."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} interrupted: worker shutting down")


class AlertRuleRefused(InvalidData):
    """An alert rule that cannot work: an unknown condition or parameter, a channel URL the
    notification library cannot send to (named by its label only: URLs hold secrets)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        JobtrailError.__init__(self, f"alert rule refused: {reason}")


class UnknownAlertRule(JobtrailError):
    """No alert rule of this name is stored."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no alert rule named {name!r}")
