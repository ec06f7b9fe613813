from django.apps import AppConfig


class IncentivesConfig(AppConfig):
    """Jobs computed from the ledger: tiers, KOC, honor rolls, refresh, assessments, reports."""

    name = "incentives"
