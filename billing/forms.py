"""Forms of the billing pages: buying credits, the auto top-up settings, and the
publisher's prices and plans."""

from __future__ import annotations

from django import forms

from billing.credit_purchases import MAX_PURCHASE, MAX_THRESHOLD, MIN_PURCHASE


def _money_field(label: str, minimum, maximum, *, required: bool = True) -> forms.DecimalField:
    # max_digits bounds what is parsed at all: "1e400" or a 500-digit number is an error,
    # never a huge Decimal; NaN and Infinity are refused by DecimalField itself.
    return forms.DecimalField(
        label=label,
        min_value=minimum,
        max_value=maximum,
        max_digits=7,
        decimal_places=2,
        required=required,
    )


class BuyCreditsForm(forms.Form):
    amount = _money_field("Amount", MIN_PURCHASE, MAX_PURCHASE)


class AutoTopUpForm(forms.Form):
    """`action=off` turns auto top-up off; otherwise both values are required."""

    action = forms.ChoiceField(choices=[("on", "on"), ("off", "off")], required=False)
    amount = _money_field("Top up by", MIN_PURCHASE, MAX_PURCHASE, required=False)
    threshold = _money_field("When credits fall below", 0, MAX_THRESHOLD, required=False)

    def clean(self):
        data = super().clean()
        if data.get("action") == "off":
            data["amount"] = data["threshold"] = None
            self.errors.pop("amount", None)
            self.errors.pop("threshold", None)
            return data
        for name in ("amount", "threshold"):
            if data.get(name) is None and name not in self.errors:
                self.add_error(name, "This field is required.")
        return data


class SpendCapForm(forms.Form):
    """A spend cap per billing period; empty removes it."""

    cap = forms.DecimalField(
        label="Spend cap", min_value=0, max_digits=12, decimal_places=2, required=False
    )


# Longer input is refused here, before it is parsed as a number at all.
AMOUNT_MAX_LENGTH = 32


def _price_part(label: str) -> forms.CharField:
    # Text, not DecimalField: `prices.parse_amount` is the one judge of a price part, the
    # same for this page, the CLI and admin.
    return forms.CharField(label=label, max_length=AMOUNT_MAX_LENGTH, strip=True)


class PublisherPriceForm(forms.Form):
    """A publisher's new pay-as-you-go price for one listing, and when it takes effect."""

    input_per_million = _price_part("Per 1M input tokens")
    output_per_million = _price_part("Per 1M output tokens")
    per_request = _price_part("Per request")
    per_second = _price_part("Per second")
    effective_from = forms.DateTimeField(
        label="Takes effect (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class ListingPlanForm(forms.Form):
    """A publisher's new subscription plan on one listing. Only the lengths are checked
    here: `listing_subscriptions.create_plan` judges the values, as it does for admin."""

    name = forms.CharField(label="Plan name", max_length=60, strip=True)
    monthly_price = _price_part("Monthly price")
    included_usage = _price_part("Included usage per month")
    overage_percent = forms.CharField(
        label="Beyond the included usage (% of pay-as-you-go)",
        max_length=AMOUNT_MAX_LENGTH,
        strip=True,
        required=False,
        help_text="What subscribers pay per call beyond the included usage, as a percentage "
        "of this listing's pay-as-you-go price: 80 is 20% off, 0 is free. Empty: 100.",
    )
    trial_days = forms.CharField(label="Trial days", max_length=3, strip=True, required=False)
