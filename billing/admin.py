from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing import checkout, corrections, listing_subscriptions, prices, stripe_events
from billing.models import (
    BillingAccount,
    BillingAlert,
    CallCost,
    CreditEntry,
    Customer,
    ListingPlan,
    ListingPrice,
    ListingSubscription,
    MeterReport,
    Payout,
    Plan,
    PublisherAccount,
    RoyaltyEntry,
    StripeEvent,
    Subscription,
    SubscriptionInvoice,
    SubscriptionUsage,
    TokenSpendCap,
    UsageCorrection,
    UsagePeriod,
    UsageRecord,
)
from portal.errors import PortalError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Mirrors and ledgers: written by services only, looked at here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name", "slug", "price_cents", "interval", "allowance", "overage_allowed",
        "rate_limit_per_minute", "max_concurrent_waits", "max_concurrent_streams",
        "is_public", "is_default",
    ]  # fmt: skip
    list_filter = ["is_public", "interval"]
    filter_horizontal = ["included_models"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["stripe_product_id", "stripe_price_id", "stripe_overage_price_id"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Stripe subscriptions are a read-only mirror; operators grant plans by adding a row
    (saved through `checkout.grant_plan`) and resync mirrors from Stripe."""

    list_display = ["org", "plan", "status", "current_period_end", "granted_by_admin"]
    list_filter = ["status", "plan", "granted_by_admin"]
    search_fields = ["org__name", "org__slug", "stripe_subscription_id"]
    actions = ["resync_from_stripe"]
    autocomplete_fields = ["org"]
    MIRRORED = [
        "status", "stripe_subscription_id", "current_period_start", "current_period_end",
        "trial_end", "cancel_at_period_end", "past_due_since", "last_event_at",
        "last_event_rank", "granted_by_admin", "updated_at",
    ]  # fmt: skip

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return ["org", "plan", *self.MIRRORED] if obj else ["org", "plan"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return []
        if obj.stripe_subscription_id:
            return ["org", "plan", *self.MIRRORED]
        return ["org", *self.MIRRORED]

    def save_model(self, request: HttpRequest, obj: Subscription, form, change: bool) -> None:
        try:
            checkout.grant_plan(obj.org, obj.plan, request.user)
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Resync from Stripe")
    def resync_from_stripe(self, request: HttpRequest, queryset: QuerySet) -> None:
        for sub in queryset.select_related("org", "plan"):
            try:
                outcome = stripe_events.resync_subscription(sub)
            except PortalError as exc:
                outcome = exc.message
            self.message_user(request, f"{sub.org}: {outcome}")


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["org", "stripe_customer_id", "created_at"]
    search_fields = ["org__name", "stripe_customer_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["stripe_event_id", "type", "status", "outcome", "attempts", "received_at"]
    list_filter = ["status", "type"]
    search_fields = ["stripe_event_id"]
    readonly_fields = [f.name for f in StripeEvent._meta.fields]


@admin.register(UsagePeriod)
class UsagePeriodAdmin(ReadOnlyAdmin):
    list_display = [
        "org", "start", "end", "requests", "allowance_used", "allowance_reserved",
        "credits_used", "overage_used", "paid_reserved",
    ]  # fmt: skip
    search_fields = ["org__name", "org__slug"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "prediction_id", "org", "model", "max_cost", "reserved_allowance",
        "reserved_credits", "reserved_overage", "created_at",
    ]  # fmt: skip
    list_filter = ["model"]
    search_fields = ["prediction__id", "org__name"]
    list_select_related = ["org", "model"]


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin):
    list_display = ["identifier", "org", "amount", "cents", "rounding", "state", "sent_at"]
    list_filter = ["state"]


class ListingPriceForm(forms.ModelForm):
    effective_from = forms.DateTimeField(
        required=False, help_text="Empty: from now. A later date schedules the price."
    )

    class Meta:
        model = ListingPrice
        fields = ["listing", *prices.PARTS, "effective_from"]

    def clean_effective_from(self):
        value = self.cleaned_data["effective_from"]
        if value is not None and value < timezone.now():
            raise forms.ValidationError("A price cannot take effect in the past.")
        return value


@admin.register(ListingPrice)
class ListingPriceAdmin(admin.ModelAdmin):
    """Prices are added, never edited once in force (past calls keep theirs); a price not
    yet in force may still be withdrawn. Adding goes through `prices.set_price`."""

    list_display = [
        "listing", "effective_from", *prices.PARTS, "currency", "created_by", "created_at",
    ]  # fmt: skip
    list_filter = ["listing"]
    search_fields = ["listing__slug", "listing__name"]
    autocomplete_fields = ["listing"]
    form = ListingPriceForm

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        in_force = obj is not None and obj.effective_from <= timezone.now()
        return not in_force and super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ListingPrice, form, change: bool) -> None:
        saved = prices.set_price(
            obj.listing,
            effective_from=obj.effective_from,
            actor=request.user,
            **{part: getattr(obj, part) for part in prices.PARTS},
        )
        # The admin logs and redirects to `obj`: it becomes the row the service wrote.
        for field in ListingPrice._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))


@admin.register(CallCost)
class CallCostAdmin(ReadOnlyAdmin):
    list_display = [
        "prediction_id", "org", "model", "amount", "currency", "input_tokens", "output_tokens",
        "seconds", "requests", "paid_by_plan", "paid_by_subscription", "paid_by_credits",
        "paid_as_overage",
        "created_at",
    ]  # fmt: skip
    list_filter = ["model"]
    search_fields = ["prediction__id", "org__name"]
    list_select_related = ["org", "model"]
    readonly_fields = [f.name for f in CallCost._meta.fields]


@admin.register(BillingAccount)
class BillingAccountAdmin(ReadOnlyAdmin):
    """Balances change only with a credit entry (grant_credits, purchases, usage)."""

    list_display = [
        "org", "balance", "credits_reserved", "spend_cap", "auto_top_up_amount",
        "auto_top_up_threshold", "top_up_in_flight", "updated_at",
    ]  # fmt: skip
    search_fields = ["org__name", "org__slug"]
    list_select_related = ["org"]


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["org", "kind", "amount", "balance_after", "reference", "created_at"]
    list_filter = ["kind"]
    search_fields = ["org__name", "reference"]
    list_select_related = ["org"]


@admin.register(TokenSpendCap)
class TokenSpendCapAdmin(ReadOnlyAdmin):
    list_display = ["token", "amount", "updated_at"]


@admin.register(BillingAlert)
class BillingAlertAdmin(ReadOnlyAdmin):
    list_display = [f.name for f in BillingAlert._meta.fields if f.name != "id"]


class UsageCorrectionForm(forms.ModelForm):
    prediction = forms.CharField(help_text="The settled call's prediction id.")
    amount = forms.CharField(
        required=False, help_text="Decimal; empty gives back all the call paid from its "
        "plan and credits (overage is corrected in Stripe).",
    )  # fmt: skip

    class Meta:
        model = UsageCorrection
        fields = ["reason"]

    def clean(self) -> dict:
        """The correction is made here, in the admin's transaction, so that the service's
        refusal (too much, nothing left, no such call) shows on the form."""
        data = super().clean()
        if self.errors:
            return data
        try:
            self.correction = corrections.give_back(
                data["prediction"], data["reason"], data.get("amount") or None, actor=self.actor
            )
        except PortalError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data


@admin.register(UsageCorrection)
class UsageCorrectionAdmin(ReadOnlyAdmin):
    """Added through `corrections.give_back` (the refund_call command's service), never
    edited: a correction of a correction is another one."""

    list_display = [
        "call_cost", "org", "credits_amount", "plan_amount", "overage_amount", "reason",
        "created_by", "created_at",
    ]  # fmt: skip
    search_fields = ["call_cost__prediction__id", "org__name"]
    list_select_related = ["org", "call_cost", "created_by"]
    form = UsageCorrectionForm

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_usagecorrection")

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request: HttpRequest, obj: UsageCorrection, form, change: bool) -> None:
        saved = form.correction
        for field in UsageCorrection._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))


@admin.register(PublisherAccount)
class PublisherAccountAdmin(admin.ModelAdmin):
    """Mirrors Stripe (account.updated); operators set only the publisher's fee."""

    list_display = [
        "org", "stripe_account_id", "details_submitted", "charges_enabled", "payouts_enabled",
        "fee_percent", "updated_at",
    ]  # fmt: skip
    search_fields = ["org__name", "org__slug", "stripe_account_id"]
    list_select_related = ["org"]
    fields = [
        "org", "stripe_account_id", "details_submitted", "charges_enabled", "payouts_enabled",
        "fee_percent", "created_at", "updated_at",
    ]  # fmt: skip
    readonly_fields = [f for f in fields if f != "fee_percent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by onboarding, never by hand

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RoyaltyEntry)
class RoyaltyEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at", "publisher", "listing", "customer", "kind", "customer_charge",
        "publisher_share", "platform_fee", "fee_percent", "reference",
    ]  # fmt: skip
    list_filter = ["kind"]
    search_fields = ["publisher__name", "reference", "listing__slug"]
    list_select_related = ["publisher", "listing", "customer"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    """Failed transfers are retried by the hourly payout run; their error shows here."""

    list_display = [
        "period_start", "publisher", "amount", "currency", "status", "attempts",
        "stripe_transfer_id", "error", "updated_at",
    ]  # fmt: skip
    list_filter = ["status", "period_start"]
    search_fields = ["publisher__name", "stripe_transfer_id"]
    list_select_related = ["publisher"]


# --- Listing subscriptions (issue #13) ----------------------------------------------------


@admin.register(ListingPlan)
class ListingPlanAdmin(ReadOnlyAdmin):
    """Publishers create and retire their plans on the publisher page; prices are
    immutable (a new price is a new plan), so operators look here, and retire."""

    list_display = [
        "listing", "name", "monthly_price", "included_usage", "overage_percent", "trial_days",
        "is_active",
        "stripe_price_id", "created_at",
    ]  # fmt: skip
    list_filter = ["is_active"]
    search_fields = ["listing__slug", "name"]
    list_select_related = ["listing"]
    actions = ["retire"]

    @admin.action(description="Retire (no new subscribers)")
    def retire(self, request: HttpRequest, queryset: QuerySet) -> None:
        for plan in queryset.select_related("listing"):
            try:
                listing_subscriptions.retire_plan(plan.pk, plan.listing, request.user)
            except PortalError as exc:
                self.message_user(request, f"{plan}: {exc.message}", messages.ERROR)


@admin.register(ListingSubscription)
class ListingSubscriptionAdmin(admin.ModelAdmin):
    """A Stripe mirror like `Subscription`: operators grant a listing plan by adding a
    row (saved through `listing_subscriptions.grant`)."""

    list_display = ["org", "listing", "plan", "status", "current_period_end", "granted_by_admin"]
    list_filter = ["status", "granted_by_admin"]
    search_fields = ["org__name", "listing__slug", "stripe_subscription_id"]
    autocomplete_fields = ["org"]

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return ["org", "plan"]
        return [f.name for f in ListingSubscription._meta.fields if f.name != "id"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [] if obj is None else self.get_fields(request, obj)

    def save_model(
        self, request: HttpRequest, obj: ListingSubscription, form, change: bool
    ) -> None:
        try:
            listing_subscriptions.grant(obj.org, obj.plan, request.user)
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)


@admin.register(SubscriptionUsage)
class SubscriptionUsageAdmin(ReadOnlyAdmin):
    list_display = ["subscription", "start", "end", "included", "used", "reserved"]
    list_select_related = ["subscription__org", "subscription__plan"]


@admin.register(SubscriptionInvoice)
class SubscriptionInvoiceAdmin(ReadOnlyAdmin):
    list_display = ["stripe_invoice_id", "subscription", "amount", "currency", "created_at"]
    search_fields = ["stripe_invoice_id", "charge_id", "payment_intent_id"]
