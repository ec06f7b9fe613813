from django.apps import AppConfig


class RewardsConfig(AppConfig):
    """Catalog, redemptions, red packet campaigns, payouts."""

    name = "rewards"
