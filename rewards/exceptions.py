"""Reward errors; ``api/errors.py`` maps every ``DomainError`` to problem+json by its code."""

from __future__ import annotations

from points.exceptions import DomainError


class RewardNotFound(DomainError):
    code = "reward_not_found"
    status = 404
    title = "Reward not found"


class RedemptionNotFound(DomainError):
    code = "redemption_not_found"
    status = 404
    title = "Redemption not found"


class PayoutNotFound(DomainError):
    code = "payout_not_found"
    status = 404
    title = "Payout not found"


class RedemptionConflict(DomainError):
    code = "redemption_conflict"
    status = 409
    title = "Redemption id already used"


class NotEligible(DomainError):
    code = "not_eligible"
    status = 409
    title = "The member may not redeem this reward"


class OutOfStock(DomainError):
    code = "out_of_stock"
    status = 409
    title = "Out of stock"


class InvalidTransition(DomainError):
    code = "invalid_transition"
    status = 409
    title = "Not allowed in the current state"


class SecondApproverRequired(DomainError):
    code = "second_approver_required"
    status = 409
    title = "A second, different admin must approve"


class BudgetExceeded(DomainError):
    code = "budget_exceeded"
    status = 409
    title = "The monthly cash budget would be exceeded"


class RewardInvalid(DomainError):
    code = "invalid_reward"
    title = "The reward is invalid"


class CampaignNotFound(DomainError):
    code = "campaign_not_found"
    status = 404
    title = "Campaign not found"


class CampaignConflict(DomainError):
    code = "campaign_conflict"
    status = 409
    title = "Campaign id already used"


class CampaignInvalid(DomainError):
    code = "invalid_campaign"
    title = "The campaign is invalid"


class AllocationMismatch(DomainError):
    code = "allocation_mismatch"
    status = 409
    title = "The stored allocation does not match its digest"
