"""Plans, the mirror of Stripe subscriptions, received Stripe events, the usage ledger,
listing prices and the cost of every call.

Stripe is the source of truth for money: `Subscription`, `Customer` and `StripeEvent`
mirror what it told us. Money is `Decimal`, kept to 6 decimal places per call. Quota
lives here: `UsagePeriod` holds one org's money counters for one billing period; the
usage ledger is append-only (`UsageRecord` reserves, `CallCost` settles,
`UsageCorrection` corrects), and so is the credit ledger (`CreditEntry`).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from models_hub.models import ModelListing, Task
from portal.models import Organization

# Money per call is kept to 6 decimal places (issue #12); 12 digits leave 6 before the point.
MONEY_DIGITS = 12
MONEY_PLACES = 6


# Running totals (a period's counters, a credit balance) get more room than one call.
TOTAL_DIGITS = 16


def _money(help_text: str = "", *, digits: int = MONEY_DIGITS) -> models.DecimalField:
    return models.DecimalField(
        max_digits=digits,
        decimal_places=MONEY_PLACES,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text=help_text,
    )


def _percent(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(100),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text=help_text,
    )


def _portal_currency() -> str:
    return settings.PORTAL_CURRENCY


class Interval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class Plan(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=300, blank=True)
    price_cents = models.PositiveIntegerField(default=0, help_text="Per interval; 0 is free.")
    currency = models.CharField(max_length=3, default="usd")
    interval = models.CharField(max_length=5, choices=Interval.choices, default=Interval.MONTH)
    stripe_product_id = models.CharField(max_length=100, blank=True)
    stripe_price_id = models.CharField(max_length=100, blank=True)
    # The metered price that bills overage through the Billing Meter.
    stripe_overage_price_id = models.CharField(max_length=100, blank=True)
    allowance = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Money per period for calls to the models it covers, at their listing "
        "prices; empty means unlimited.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(default=60)
    # Each open wait or stream holds a task and a Redis reader in a web process: one org
    # must not take them all (API.md: 429 with Retry-After, WebSocket close 4429).
    max_concurrent_waits = models.PositiveIntegerField(
        default=50, help_text="Requests waiting at once with `Prefer: wait`, per org."
    )
    max_concurrent_streams = models.PositiveIntegerField(
        default=200, help_text="Open SSE, /v1 and WebSocket streams at once, per org."
    )
    included_models = models.ManyToManyField(
        ModelListing, blank=True, related_name="plans", verbose_name="models"
    )
    tasks = models.JSONField(
        default=list, blank=True, help_text=f"Whole tasks unlocked: {', '.join(Task.values)}."
    )
    overage_allowed = models.BooleanField(
        default=False,
        help_text="Calls beyond the allowance go on, billed at listing prices through the "
        "Stripe meter; off, the allowance is a hard cap (credits still pay).",
    )
    is_public = models.BooleanField(default=True, help_text="Listed on the pricing page.")
    is_default = models.BooleanField(
        default=False, help_text="The plan of every org without a subscription (one only)."
    )
    trial_days = models.PositiveSmallIntegerField(default=0)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price_cents"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_free(self) -> bool:
        return self.price_cents == 0

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_cents) / 100


class Customer(models.Model):
    """The org's Stripe customer, created once (on the first checkout) and kept."""

    org = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="+")
    stripe_customer_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.org} ({self.stripe_customer_id or 'not created'})"


class SubscriptionStatus(models.TextChoices):
    # Stripe's statuses, mirrored as they are.
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    PAUSED = "paused"


class Subscription(models.Model):
    """The org's current subscription: a mirror of Stripe's, or a plan granted by an admin.

    No row means the default (free) plan.
    """

    org = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="billing_subscription"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    stripe_subscription_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    past_due_since = models.DateTimeField(null=True, blank=True)
    # The (Stripe event time, event rank) last applied: an older event never overwrites.
    last_event_at = models.PositiveBigIntegerField(default=0)
    last_event_rank = models.SmallIntegerField(default=0)
    granted_by_admin = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org}: {self.plan} ({self.status})"


class EventStatus(models.TextChoices):
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class StripeEvent(models.Model):
    """Every Stripe event received; stored in the same transaction as its effect."""

    stripe_event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=80, db_index=True)
    created = models.PositiveBigIntegerField(help_text="Stripe's event time (epoch seconds).")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=EventStatus.choices)
    # What the handler did ("applied", "stale: a newer event was applied", ...).
    outcome = models.CharField(max_length=200, blank=True)
    # Why the handler failed (for operators in admin; never sent to anyone).
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.stripe_event_id} {self.type} ({self.status})"


class UsagePeriod(models.Model):
    """One org's money counters for one billing period. Reservations and settlements
    change them only under this row's lock (admission and settlement both take it), so
    allowance used + reserved never exceeds the plan's allowance, and what the org pays
    beyond it (credits and overage, settled + reserved) never exceeds its spend cap."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    allowance_used = _money(digits=TOTAL_DIGITS)
    allowance_reserved = _money(digits=TOTAL_DIGITS)
    credits_used = _money(digits=TOTAL_DIGITS)
    overage_used = _money(digits=TOTAL_DIGITS)
    # Worst cases of calls in flight that credits or overage would pay (the spend cap).
    paid_reserved = _money(digits=TOTAL_DIGITS)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(fields=["org", "start"], name="uniq_usage_period_org_start")
        ]

    def __str__(self) -> str:
        return f"{self.org} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"

    @property
    def spent(self) -> Decimal:
        """What the org paid beyond its plan this period: what a spend cap counts."""
        return self.credits_used + self.overage_used


class UsageRecord(models.Model):
    """The usage ledger's reservation entry, one per prediction, written at admission and
    never changed: the worst-case cost and how it was reserved, source by source. The
    settlement entry is the call's `CallCost`; a correction is a `UsageCorrection`."""

    prediction = models.OneToOneField(
        "inference.Prediction", on_delete=models.CASCADE, related_name="usage_record"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    period = models.ForeignKey(UsagePeriod, on_delete=models.CASCADE, related_name="records")
    model = models.ForeignKey(ModelListing, on_delete=models.PROTECT, related_name="+")
    token = models.ForeignKey(
        "portal.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    price = models.ForeignKey(
        "ListingPrice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    max_cost = _money("The call's worst case: more is never charged.")
    # False when billing was off at admission (no plan at all): nobody pays for the call.
    metered = models.BooleanField(default=True)
    # The listing subscription plan's rate beyond its included usage, as it was when the
    # call was admitted: settlement charges at the rate the reservation was made with.
    overage_percent = _percent("Percent of the price paid beyond the included usage.")
    reserved_allowance = _money()
    reserved_credits = _money()
    reserved_overage = _money()
    # Set when the call is covered by a listing subscription: `reserved_allowance` is then
    # held on that subscription's counters, not on the site plan's period.
    subscription_usage = models.ForeignKey(
        "SubscriptionUsage", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["token", "created_at"], name="usage_token_created")]

    def __str__(self) -> str:
        return f"{self.prediction_id}: up to {self.max_cost}"

    @property
    def reserved_paid(self) -> Decimal:
        return self.reserved_credits + self.reserved_overage


class MeterReport(models.Model):
    """A batch of one org's overage sent to Stripe as one Billing Meter event, in cents.

    Cents are rounded half up on the period's running total, so what Stripe invoices for
    a period is its exact overage rounded once; `rounding` records the difference this
    report carried. `identifier` is Stripe's idempotency key for meter events: a retry
    after a lost acknowledgement is recognised by Stripe and never counted twice.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        UNBILLABLE = "unbillable"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    period = models.ForeignKey(
        UsagePeriod, null=True, on_delete=models.PROTECT, related_name="meter_reports"
    )
    identifier = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    cents = models.PositiveBigIntegerField(default=0)
    rounding = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"], name="meter_report_state")]

    def __str__(self) -> str:
        return f"{self.identifier}: {self.cents} cents ({self.state})"


class ListingPrice(models.Model):
    """A listing's price from `effective_from` on: the price of a call is the row with the
    latest `effective_from` at or before the call's creation. Append-only: a change is a
    new row, so no past call is ever repriced. A listing without a row is free."""

    listing = models.ForeignKey(ModelListing, on_delete=models.CASCADE, related_name="prices")
    input_per_million = _money("Per 1M input tokens (embeddings: per 1M tokens embedded).")
    output_per_million = _money("Per 1M output tokens.")
    per_request = _money("Per call that counts as a request.")
    per_second = _money("Per second of run time.")
    currency = models.CharField(max_length=3, default=_portal_currency)
    effective_from = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["listing", "-effective_from", "-pk"]
        indexes = [
            models.Index(fields=["listing", "-effective_from"], name="listing_price_effective")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0)
                & Q(output_per_million__gte=0)
                & Q(per_request__gte=0)
                & Q(per_second__gte=0),
                name="listing_price_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.listing} from {self.effective_from:%Y-%m-%d %H:%M}"

    @property
    def is_free(self) -> bool:
        parts = (self.input_per_million, self.output_per_million, self.per_request)
        return not any(parts) and not self.per_second


class CallCost(models.Model):
    """What one prediction cost and why, written once when it settles and never changed:
    the quantities billed, the unit prices copied from the price in force when the call
    was created (a later price change cannot alter it), the amount, and who paid it."""

    prediction = models.OneToOneField(
        "inference.Prediction", on_delete=models.CASCADE, related_name="call_cost"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(ModelListing, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(
        ListingPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    currency = models.CharField(max_length=3)
    input_per_million = _money()
    output_per_million = _money()
    per_request = _money()
    per_second = _money()
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    generated_output_tokens = models.PositiveIntegerField(default=0)
    seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal(0))
    requests = models.PositiveSmallIntegerField(default=0)
    amount = _money()
    # Who paid, by source in the order they pay (API.md `cost.paid_from`); they add up to
    # `amount` unless billing is off (no plan at all), when nobody pays.
    paid_by_plan = _money()
    paid_by_subscription = _money("Paid from a listing subscription's included usage.")
    paid_by_credits = _money()
    paid_as_overage = _money()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "created_at"], name="call_cost_org_created"),
            models.Index(
                fields=["org", "created_at"],
                name="call_cost_overage",
                condition=Q(paid_as_overage__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prediction_id}: {self.amount} {self.currency}"


class MeteredCost(models.Model):
    """Which meter report carries a call's overage: inserted once (the receipt itself is
    never changed), so a call's overage joins exactly one report."""

    call_cost = models.OneToOneField(CallCost, on_delete=models.CASCADE, related_name="metered")
    report = models.ForeignKey(MeterReport, on_delete=models.CASCADE, related_name="costs")

    def __str__(self) -> str:
        return f"{self.call_cost_id} in {self.report_id}"


class UsageCorrection(models.Model):
    """A correction of a settled call, as its own ledger entry (a settled receipt is never
    rewritten): the amounts given back or charged, source by source (negative = back)."""

    call_cost = models.ForeignKey(CallCost, on_delete=models.PROTECT, related_name="corrections")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    plan_amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    credits_amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    overage_amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.call_cost_id}: {self.reason}"


class BillingAccount(models.Model):
    """An org's prepaid credits, spend cap and auto top-up, one row per org.

    The balance changes only with a `CreditEntry` in the same transaction, by conditional
    UPDATE: calls reserve their worst case (`credits_reserved`) only while
    `balance - reserved` covers it, so calls alone never take the balance below zero. A
    refund of credits already spent may: a negative balance stops paid calls until a
    top-up brings it back."""

    org = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="billing_account"
    )
    balance = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6, default=Decimal(0))
    credits_reserved = _money(digits=TOTAL_DIGITS)
    spend_cap = models.DecimalField(
        max_digits=TOTAL_DIGITS,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Per billing period, on what the org pays beyond its plan (credits and "
        "overage); empty means none.",
    )
    auto_top_up_amount = models.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=2, null=True, blank=True
    )
    auto_top_up_threshold = models.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=2, null=True, blank=True
    )
    # The top-up in flight (a PaymentIntent id), so that there is at most one at a time.
    top_up_in_flight = models.CharField(max_length=100, blank=True)
    top_up_started_at = models.DateTimeField(null=True, blank=True)
    # The card a credits purchase saved (`setup_future_usage=off_session`) for auto top-ups.
    # Checkout may name only the PaymentIntent: its payment method is then read from Stripe
    # when the first top-up runs. `top_up_method_event_at` is the Stripe time of the event
    # that set them, so an older event never replaces a newer card.
    top_up_payment_method = models.CharField(max_length=100, blank=True)
    top_up_source_intent = models.CharField(max_length=100, blank=True)
    top_up_method_event_at = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org}: {self.balance} credits"

    @property
    def available(self) -> Decimal:
        return self.balance - self.credits_reserved


class CreditEntry(models.Model):
    """The credit ledger, append-only: every change of a balance with its reason. The
    balance is the sum of its entries; `reference` makes each outside event (a Stripe
    payment, a refund, a call's settlement) count once."""

    class Kind(models.TextChoices):
        GRANT = "grant"
        PURCHASE = "purchase"
        TOP_UP = "top_up"
        REFUND = "refund"
        USAGE = "usage"
        CORRECTION = "correction"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6)
    balance_after = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6)
    reference = models.CharField(max_length=120, unique=True, null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["org", "created_at"], name="credit_entry_org")]

    def __str__(self) -> str:
        return f"{self.org}: {self.kind} {self.amount}"


class TokenSpendCap(models.Model):
    """An API token's own spend cap per billing period (set by owners), counted like the
    org's: what the token's calls pay beyond the plan."""

    token = models.OneToOneField(
        "portal.ApiToken", on_delete=models.CASCADE, related_name="spend_cap"
    )
    amount = models.DecimalField(
        max_digits=TOTAL_DIGITS, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.token}: {self.amount}"


class BillingAlert(models.Model):
    """An alert sent (e-mail to owners, `billing.threshold` webhook): the unique key makes
    each threshold of each subject fire once per period, however many calls cross it."""

    class Subject(models.TextChoices):
        SPEND_CAP = "spend_cap"
        ALLOWANCE = "allowance"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    subject = models.CharField(max_length=12, choices=Subject.choices)
    threshold = models.PositiveSmallIntegerField(help_text="Percent: 50, 80 or 100.")
    limit = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6)
    used = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "period_start", "subject", "threshold"], name="uniq_billing_alert"
            )
        ]

    def __str__(self) -> str:
        return f"{self.org}: {self.subject} {self.threshold}%"


class PriceChangeNotice(models.Model):
    """A scheduled price change announced to one customer org (e-mail to its owners): the
    unique key makes each change reach each org once, however often it is sent."""

    price = models.ForeignKey(ListingPrice, on_delete=models.CASCADE, related_name="+")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["price", "org"], name="uniq_price_change_notice")
        ]

    def __str__(self) -> str:
        return f"{self.org}: price {self.price_id}"


# --- Publishers ------------------------------------------------------------------------


class PublisherAccount(models.Model):
    """An org's Stripe Connect Express account (the publisher side of the marketplace),
    mirrored from Stripe's `account.updated` events; Stripe is the source of truth."""

    org = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="publisher_account"
    )
    stripe_account_id = models.CharField(max_length=100, unique=True)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    details_submitted = models.BooleanField(default=False)
    fee_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="The platform's fee for this publisher; empty: PLATFORM_FEE_PERCENT.",
    )
    # The `created` time of the last Stripe event applied: an older one never overwrites.
    last_event_at = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org}: {self.stripe_account_id}"

    @property
    def onboarded(self) -> bool:
        """Stripe can pay this publisher out: it may sell paid prices and plans."""
        return self.details_submitted and self.payouts_enabled


class Payout(models.Model):
    """One Connect transfer of a publisher's balance for one calendar month (UTC). The
    unique key makes a payout run, however often it is started, pay each publisher once
    per month; a failed transfer stays here and is retried with the same idempotency key."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        FAILED = "failed"

    publisher = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField(help_text="The first day of the month paid out.")
    cutoff = models.DateTimeField(help_text="Entries created before this are included.")
    amount = models.DecimalField(
        max_digits=TOTAL_DIGITS, decimal_places=2, validators=[MinValueValidator(Decimal(0))]
    )
    currency = models.CharField(max_length=3, default=_portal_currency)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    stripe_transfer_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "publisher"]
        constraints = [
            models.UniqueConstraint(
                fields=["publisher", "period_start"], name="uniq_payout_publisher_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.publisher}: {self.period_start:%Y-%m} {self.amount}"

    @property
    def idempotency_key(self) -> str:
        return f"payout-{self.publisher_id}-{self.period_start:%Y-%m}"


class RoyaltyEntry(models.Model):
    """Append-only: what a customer was charged for a publisher's listing, the publisher's
    share and the platform's fee (they add up to the charge). Refunds and disputes are
    reversing entries (negative amounts); nothing is ever edited."""

    class Kind(models.TextChoices):
        USAGE = "usage"
        SUBSCRIPTION = "subscription"
        REFUND = "refund"
        DISPUTE = "dispute"
        DISPUTE_WON = "dispute_won"

    publisher = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    listing = models.ForeignKey(
        ModelListing, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    customer = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # What the entry is for ("usage:<prediction id>", "invoice:<id>", ...): unique, so a
    # retried settlement or a replayed event records nothing twice.
    reference = models.CharField(max_length=160, unique=True)
    currency = models.CharField(max_length=3, default=_portal_currency)
    customer_charge = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    publisher_share = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    platform_fee = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    fee_percent = models.DecimalField(max_digits=5, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "royalty entries"
        indexes = [models.Index(fields=["publisher", "created_at"], name="royalty_pub_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(customer_charge=models.F("publisher_share") + models.F("platform_fee")),
                name="royalty_parts_add_up",
            )
        ]

    def __str__(self) -> str:
        return f"{self.publisher}: {self.kind} {self.customer_charge}"


# --- Listing subscriptions ---------------------------------------------------------------


class ListingPlan(models.Model):
    """A publisher's subscription plan on one listing: a monthly price that includes
    `included_usage` worth of calls at the listing's price; beyond it, calls are paid per
    call (credits), as without a plan, at `overage_percent` of the listing's price. Prices
    are immutable, as Stripe's are: a new price is a new plan, and a retired plan keeps its
    subscribers at what they bought."""

    listing = models.ForeignKey(
        ModelListing, on_delete=models.CASCADE, related_name="subscription_plans"
    )
    name = models.CharField(max_length=60)
    monthly_price = models.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.50"))],
        help_text="Charged every month through Stripe (Stripe's minimum charge is $0.50).",
    )
    included_usage = _money(
        "Calls worth this much at the listing's price are included each month.",
        digits=TOTAL_DIGITS,
    )
    overage_percent = _percent(
        "Calls beyond the included usage cost this percentage of the listing's "
        "pay-as-you-go price (100: the full price)."
    )
    trial_days = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(90)])
    currency = models.CharField(max_length=3, default=_portal_currency)
    stripe_product_id = models.CharField(max_length=100, blank=True)
    stripe_price_id = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(
        default=True, help_text="Retired plans take no new subscribers; existing ones stay."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["listing", "monthly_price", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_price__gt=0) & Q(included_usage__gte=0),
                name="listing_plan_amounts",
            ),
            models.CheckConstraint(
                condition=Q(overage_percent__gte=0) & Q(overage_percent__lte=100),
                name="listing_plan_overage_percent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.listing}: {self.name}"


class ListingSubscription(models.Model):
    """An org's subscription to a listing's plan, mirrored from Stripe like the site
    plan's `Subscription`: one row per org and listing (a new subscription to the same
    listing takes the row over). An org holds any number of these beside its site plan."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    listing = models.ForeignKey(ModelListing, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(ListingPlan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    stripe_subscription_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    past_due_since = models.DateTimeField(null=True, blank=True)
    # When the org subscribed: it bought the listing prices announced (created) by then.
    # Each renewal moves the lock on (`listing_subscriptions.price_lock`).
    prices_announced_by = models.DateTimeField()
    last_event_at = models.PositiveBigIntegerField(default=0)
    last_event_rank = models.SmallIntegerField(default=0)
    granted_by_admin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["org", "listing"]
        constraints = [
            models.UniqueConstraint(fields=["org", "listing"], name="uniq_listing_subscription")
        ]

    def __str__(self) -> str:
        return f"{self.org}: {self.plan} ({self.status})"


class SubscriptionUsage(models.Model):
    """One listing subscription's counters for one period: what its included usage paid
    (`used`) and holds for calls in flight (`reserved`). Changed only by conditional
    UPDATEs: a reservation succeeds only while used + reserved stays within the plan."""

    subscription = models.ForeignKey(
        ListingSubscription, on_delete=models.CASCADE, related_name="usage"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    included = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=6)
    used = _money(digits=TOTAL_DIGITS)
    reserved = _money(digits=TOTAL_DIGITS)

    class Meta:
        ordering = ["subscription", "-start"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "start"], name="uniq_sub_usage"),
            models.CheckConstraint(
                condition=Q(used__gte=0) & Q(reserved__gte=0), name="sub_usage_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription}: {self.used} of {self.included} from {self.start:%Y-%m-%d}"


class SubscriptionInvoice(models.Model):
    """A paid invoice of a listing subscription, as Stripe reported it: the royalty
    ledger's subscription entry is written from it, and a refund or dispute of its
    charge finds the listing and the split through it."""

    subscription = models.ForeignKey(
        ListingSubscription, on_delete=models.PROTECT, related_name="invoices"
    )
    stripe_invoice_id = models.CharField(max_length=100, unique=True)
    charge_id = models.CharField(max_length=100, blank=True, db_index=True)
    payment_intent_id = models.CharField(max_length=100, blank=True, db_index=True)
    amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=2)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.stripe_invoice_id}: {self.amount} {self.currency}"
