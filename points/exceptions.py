"""Domain errors. The API maps each to an RFC 9457 problem in ``api/errors.py``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "domain_error"
    status = 400
    title = "Request refused"

    def __init__(self, detail: str = "", errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []


class RulesInvalid(DomainError):
    code = "invalid_rules"
    title = "The rule set is invalid"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("The rule set is invalid.", errors)


class CommunityNotFound(DomainError):
    code = "community_not_found"
    status = 404
    title = "Community not found"


class MemberNotFound(DomainError):
    code = "member_not_found"
    status = 404
    title = "Member not found"


class InvalidPeriod(DomainError):
    code = "invalid_period"
    title = "Invalid period"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("The period is invalid.", errors)


class InvalidMemberToken(DomainError):
    code = "invalid_member_token"
    status = 401
    title = "Invalid or expired member token"


class InsufficientPoints(DomainError):
    code = "insufficient_points"
    status = 409
    title = "Not enough spendable points"


class EventNotFound(DomainError):
    code = "event_not_found"
    status = 404
    title = "Event not found"


class ValidationFailed(DomainError):
    code = "validation_error"
    title = "Invalid request"


class AdjustmentConflict(DomainError):
    code = "adjustment_conflict"
    status = 409
    title = "Adjustment id already used"
