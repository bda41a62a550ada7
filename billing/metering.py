"""Money at admission and settlement: a call's worst case is reserved against every limit
that applies (plan allowance, credits, org and token spend caps, `max_cost`) in one
atomic step, and settlement turns the reservation into what was delivered.

Who pays, in order: the plan's allowance (for the models it covers), then prepaid
credits, then overage (only where the plan allows it). A listing subscription's
included usage takes the plan allowance's place for its listing, and what it does not
cover is charged at the subscription plan's `overage_percent` of the price, rounded
down to the micro-unit (the customer is never charged more than the rate says).

Every change happens under the lock of the org's `UsagePeriod` row, which admission and
settlement of one org share, so the checks below are never read-then-write; credits also
change only by conditional UPDATE. A call is never charged more than the worst case it reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum

from billing import (
    alerts,
    costs,
    counters,
    credit_purchases,
    credits,
    estimate,
    listing_subscriptions,
    plans,
    royalties,
)
from billing.models import (
    MONEY_PLACES,
    BillingAccount,
    CallCost,
    CreditEntry,
    ListingPrice,
    ListingSubscription,
    TokenSpendCap,
    UsageCorrection,
    UsagePeriod,
    UsageRecord,
)
from billing.plans import PlanState
from billing.prices import decimal_string, free_price, parse_amount, price_at
from inference.models import Prediction, Status
from models_hub.models import ModelListing
from portal.errors import InvalidInput, PaymentRequired
from portal.hotcache import HotCache
from portal.models import Organization

ZERO = Decimal(0)
HUNDRED = Decimal(100)
AMOUNT_STEP = Decimal(1).scaleb(-MONEY_PLACES)


# --- Quotes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    price: ListingPrice
    max_cost: Decimal
    expected_cost: Decimal


def _priced(
    price: ListingPrice, input_tokens: int, output_tokens: int, seconds: Decimal
) -> Decimal:
    billed = costs.Billed(input_tokens, output_tokens, seconds, requests=1)
    return costs.amount_for(price, billed)


def _typical_run(listing: ModelListing) -> tuple[int, Decimal] | None:
    """Mean output tokens and run time of the model's recent calls, if any."""
    recent = CallCost.objects.filter(model=listing, requests=1).order_by("-created_at")[:100]
    rows = list(recent.values_list("output_tokens", "seconds"))
    if not rows:
        return None
    tokens = sum(row[0] for row in rows) // len(rows)
    seconds = sum((row[1] for row in rows), ZERO) / len(rows)
    return tokens, seconds


def worst_case(listing: ModelListing, data: dict, price: ListingPrice) -> Decimal:
    """The most a call can cost: the input estimate, every token `max_new_tokens` allows,
    the whole time limit."""
    input_tokens = estimate.input_tokens(listing, data)
    max_output = estimate.max_new_tokens(listing, data)
    return _priced(price, input_tokens, max_output, Decimal(listing.time_limit_seconds))


def quote(listing: ModelListing, data: dict) -> Quote:
    """The worst case and the expected cost (the model's typical output and run time
    lately; half the worst case's output and time without history) of a call."""
    price = price_at(listing)
    max_output = estimate.max_new_tokens(listing, data)
    max_seconds = Decimal(listing.time_limit_seconds)
    typical = _typical_run(listing) if (price.output_per_million or price.per_second) else None
    output, seconds = typical or (max_output // 2, max_seconds / 2)
    input_tokens = estimate.input_tokens(listing, data)
    expected = _priced(price, input_tokens, min(output, max_output), min(seconds, max_seconds))
    return Quote(price, worst_case(listing, data, price), expected)


def quote_payload(result: Quote) -> dict[str, str]:
    return {
        "currency": result.price.currency,
        "max_cost": decimal_string(result.max_cost),
        "expected_cost": decimal_string(result.expected_cost),
    }


# --- Admission ---------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    allowance: Decimal = ZERO
    credits: Decimal = ZERO
    overage: Decimal = ZERO

    @property
    def paid(self) -> Decimal:
        return self.credits + self.overage

    @property
    def charged(self) -> Decimal:
        return self.allowance + self.paid


def overage_percent(subscribed: ListingSubscription | None) -> Decimal:
    """The rate of the part of a call beyond a listing subscription's included usage (the
    full price without one). The plan comes with the cached subscription: no query."""
    return HUNDRED if subscribed is None else subscribed.plan.overage_percent


def at_percent(amount: Decimal, percent: Decimal) -> Decimal:
    """`percent` of `amount`, rounded down to the micro-unit: a discount never rounds the
    customer's charge up, and a smaller amount never costs more (settlement stays within
    what admission reserved)."""
    if percent == HUNDRED:
        return amount
    return (amount * percent / HUNDRED).quantize(AMOUNT_STEP, rounding=ROUND_DOWN)


def _money(amount: Decimal, currency: str | None = None) -> str:
    currency = currency or settings.PORTAL_CURRENCY
    text = decimal_string(amount)
    return f"${text}" if currency == "usd" else f"{text} {currency.upper()}"


def _create_period(org: Organization, state: PlanState) -> None:
    # ON CONFLICT DO NOTHING: concurrent first admissions of a period all end up with
    # the one row, none of them fails.
    UsagePeriod.objects.bulk_create(
        [UsagePeriod(org=org, start=state.period_start, end=state.period_end)],
        ignore_conflicts=True,
    )


def _period_id(org: Organization, state: PlanState) -> int:
    """The org's period row, unlocked: what an unmetered entry needs is its id."""
    found = counters.period_id(org.pk, state.period_start)
    if found is None:
        _create_period(org, state)
        found = counters.period_id(org.pk, state.period_start)
    return found


def _locked_period(
    org: Organization, state: PlanState
) -> tuple[UsagePeriod, BillingAccount | None]:
    """The org's period row, locked (the lock every admission and settlement of the
    period takes), and its billing account as of then, in one query."""
    locked = counters.lock_period(org.pk, state.period_start)
    if locked is None:
        _create_period(org, state)
        locked = counters.lock_period(org.pk, state.period_start)
    return locked


def _allowance_room(state: PlanState, period: UsagePeriod, covered: bool) -> Decimal | None:
    """What the plan's allowance still holds for this call; None means unlimited."""
    if not covered:
        return ZERO
    allowance = state.plan.allowance
    if allowance is None:
        return None
    return max(ZERO, allowance - period.allowance_used - period.allowance_reserved)


def _shortfall(
    state: PlanState, listing: ModelListing, covered: bool, account: BillingAccount | None
) -> PaymentRequired:
    """Why nothing can pay for the rest of the call's worst case."""
    plan = state.plan
    subscribed = state.listing_subscription
    has_credits = account is not None and account.balance > 0
    if account is not None and account.balance < 0:
        return PaymentRequired(
            f"Your credit balance is negative ({_money(account.balance)}) after a "
            "refund: add credits on the billing page (/billing/) to make paid calls again.",
            code="credits_negative",
        )
    if has_credits:
        return PaymentRequired(
            "Your credit balance does not cover this call's worst case (credits already "
            "held by calls in flight count): add credits on the billing page (/billing/), "
            "or lower max_new_tokens.",
            code="insufficient_credits",
        )
    if subscribed is not None:
        return PaymentRequired(
            f"Your {subscribed.plan.name} subscription's included usage of {listing.name} "
            "is used up for this period. Buy credits on the billing page (/billing/) to "
            "continue now: calls beyond it are paid per call.",
            code="quota_exhausted",
        )
    if state.subscription_required:
        return PaymentRequired(
            f"This workspace has no plan and no credits: the {plan.name} plan's allowance "
            "comes with personal workspaces. Subscribe on the pricing page (/pricing/) or "
            "buy credits on the billing page (/billing/).",
            code="subscription_required",
        )
    if not covered:
        return PaymentRequired(
            f"{listing.name} is not included in your {plan.name} plan. Pay per call with "
            "credits (billing page, /billing/) or choose a plan that includes it "
            "(/pricing/).",
            code="model_not_in_plan",
            param="model",
        )
    return PaymentRequired(
        f"Your {plan.name} plan's allowance for this period is used up (the period ends "
        f"{state.period_end:%Y-%m-%d %H:%M} UTC). Buy credits on the billing page "
        "(/billing/) or upgrade on the pricing page (/pricing/) to continue now.",
        code="quota_exhausted",
    )


def _charged(worst: Decimal, room: Decimal | None, percent: Decimal) -> tuple[Decimal, Decimal]:
    """The worst case as the customer would be charged it: what the allowance that covers
    the call (the plan's, or the listing subscription's; `room` None means unlimited)
    still holds, at the price, and the rest at `percent` of it."""
    from_allowance = worst if room is None else min(worst, room)
    return from_allowance, at_percent(worst - from_allowance, percent)


def _split(
    from_allowance: Decimal,
    rest: Decimal,
    state: PlanState,
    listing: ModelListing,
    covered: bool,
    account: BillingAccount | None,
) -> Split:
    """Who pays `rest`, the part of the worst case beyond the allowance, as charged."""
    if not rest:
        return Split(allowance=from_allowance)
    if account is not None and account.balance < 0:
        # A refund took back credits already spent: paid calls wait for a top-up.
        raise _shortfall(state, listing, covered, account)
    from_credits = min(rest, max(ZERO, account.available)) if account else ZERO
    rest -= from_credits
    if rest and not (covered and state.plan.overage_allowed):
        raise _shortfall(state, listing, covered, account)
    return Split(from_allowance, from_credits, rest)


# Set by owners, read by every call of the token: see billing.hot.
_token_caps: HotCache[TokenSpendCap | None] = HotCache()


def _token_cap(token_id: int | None, state: PlanState) -> TokenSpendCap | None:
    if token_id is None:
        return None

    def load() -> TokenSpendCap | None:
        # Built only on a miss: a queryset costs more to build than the cache hit.
        return TokenSpendCap.objects.filter(token_id=token_id).first()

    return _token_caps.get(token_id, state.stamp, load)


def token_spent(token_id: int, period: UsagePeriod) -> Decimal:
    """What a token's calls paid beyond the plan this period, in flight included."""
    settled = CallCost.objects.filter(
        prediction__usage_record__period=period, prediction__token_id=token_id
    ).aggregate(total=Sum(F("paid_by_credits") + F("paid_as_overage")))["total"]
    # Given back since (negative amounts): the cap gets that room back.
    corrected = UsageCorrection.objects.filter(
        call_cost__prediction__usage_record__period=period,
        call_cost__prediction__token_id=token_id,
    ).aggregate(total=Sum(F("credits_amount") + F("overage_amount")))["total"]
    in_flight = UsageRecord.objects.filter(
        period=period, token_id=token_id, prediction__call_cost__isnull=True
    ).aggregate(total=Sum(F("reserved_credits") + F("reserved_overage")))["total"]
    return (settled or ZERO) + (corrected or ZERO) + (in_flight or ZERO)


def _check_caps(
    paid: Decimal,
    period: UsagePeriod,
    account: BillingAccount | None,
    token_cap: TokenSpendCap | None,
) -> None:
    cap = account.spend_cap if account is not None else None
    if cap is not None and period.spent + period.paid_reserved + paid > cap:
        raise PaymentRequired(
            f"This call could cost up to {_money(paid)} beyond your plan, which would "
            f"cross the organization's spend cap of {_money(cap)} for this period "
            f"({_money(period.spent)} spent). An owner can raise it on the billing "
            "page (/billing/).",
            code="spend_cap_reached",
        )
    if token_cap is not None and token_spent(token_cap.token_id, period) + paid > token_cap.amount:
        raise PaymentRequired(
            f"This call could cost up to {_money(paid)} beyond your plan, which would "
            f"cross this API token's spend cap of {_money(token_cap.amount)} for "
            "this period. An owner can raise it on the billing page (/billing/).",
            code="spend_cap_reached",
        )


def parse_max_cost(value: object) -> Decimal | None:
    """A client's `max_cost`: a decimal string (API.md) or a JSON number (what OpenAI SDK
    users send as an extra field); None when absent."""
    if value is None:
        return None
    if isinstance(value, float) and not isinstance(value, bool):
        # The number's shortest repr ("0.05"), not its binary expansion.
        value = repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput('max_cost must be a decimal string such as "0.05".', param="max_cost")
    return parse_amount(value, "max_cost")


def check_max_cost(worst: Decimal, max_cost: Decimal | None, currency: str) -> None:
    if max_cost is not None and worst > max_cost:
        raise PaymentRequired(
            f"This call could cost up to {_money(worst, currency)}, above its max_cost of "
            f"{_money(max_cost, currency)}. Lower max_new_tokens or raise max_cost.",
            code="cost_cap_exceeded",
            param="max_cost",
        )


def reserve(
    prediction: Prediction,
    listing: ModelListing,
    state: PlanState,
    max_cost: Decimal | None = None,
) -> UsageRecord:
    """Reserves the call's worst case; raises PaymentRequired (rolling back the whole
    admission) when any limit would be crossed. Runs in the admission's transaction."""
    subscribed = state.listing_subscription
    locked = None
    if subscribed is not None:
        locked = listing_subscriptions.price_lock(subscribed, prediction.created_at)
    price = price_at(listing, prediction.created_at, state.stamp, announced_by=locked)
    worst = worst_case(listing, prediction.input, price)
    percent = overage_percent(subscribed)
    fields = {
        "prediction": prediction,
        "org_id": prediction.org_id,
        "model": listing,
        "token_id": prediction.token_id,
        "price": price if price.pk else None,
        "max_cost": worst,
        "overage_percent": percent,
    }
    if state.plan is None:
        # Billing is off (no default plan at all): nothing is reserved, nobody pays.
        check_max_cost(worst, max_cost, price.currency)
        period_id = _period_id(prediction.org, state)
        return counters.insert_record(UsageRecord(period_id=period_id, metered=False, **fields))
    # What does not change with the counters is read before the lock, so that it is
    # held (and every other admission of the org waits) as briefly as possible.
    covered = not state.subscription_required and plans.includes(state.plan, listing, state.stamp)
    token_cap = _token_cap(prediction.token_id, state)
    # The reads below stay true until this transaction commits.
    period, account = _locked_period(prediction.org, state)
    usage = None
    if subscribed is not None:
        usage = listing_subscriptions.usage_for(subscribed, prediction.created_at)
        room = listing_subscriptions.room(usage)
    else:
        room = _allowance_room(state, period, covered)
    from_allowance, rest = _charged(worst, room, percent)
    # The client's cap is on what it would be charged, known once the room is read.
    check_max_cost(from_allowance + rest, max_cost, price.currency)
    split = _split(from_allowance, rest, state, listing, covered, account)
    if split.paid:
        _check_caps(split.paid, period, account, token_cap)
    if usage is not None and not listing_subscriptions.hold(usage.pk, split.allowance):
        # Only calls admitted in another period of the org (its lock is per period) can
        # have taken the room since it was read: refused, nothing written.
        raise _shortfall(state, listing, covered, account)
    record = UsageRecord(
        period=period,
        reserved_allowance=split.allowance,
        reserved_credits=split.credits,
        reserved_overage=split.overage,
        subscription_usage=usage,
        **fields,
    )
    reservation = counters.Reservation(
        account_id=account.pk if split.credits else None,
        credits=split.credits,
        period_id=period.pk,
        # A listing subscription's share is held on its own counters (above).
        allowance=split.allowance if usage is None else ZERO,
        paid=split.paid,
    )
    if not counters.write_reservation(record, reservation):
        # Only a refund taking back credits since the period lock was taken does this.
        raise PaymentRequired(
            "Your credit balance does not cover this call's worst case.",
            code="insufficient_credits",
        )
    return record


# --- Settlement --------------------------------------------------------------------


def delivered_output_tokens(prediction: Prediction) -> int:
    """Billed = delivered: output tokens whose events reached the log before a cancel
    took effect (the worker counts them); all generated ones for other runs."""
    if prediction.delivered_output_tokens is None:
        return prediction.output_tokens
    return min(prediction.delivered_output_tokens, prediction.output_tokens)


def _counts_as_request(prediction: Prediction, output_tokens: int) -> bool:
    """A call is a request once it delivered something: a stream canceled or failed after
    its first token served the client as a finished one did (README, "What a call counts")."""
    delivered = output_tokens > 0 or prediction.output not in (None, "", [], {})
    return prediction.status == Status.SUCCEEDED or delivered


def _pay(amount: Decimal, record: UsageRecord) -> Split:
    """The delivered amount, paid in the order the worst case was reserved in: the
    allowance at the price, the rest at the rate it was reserved at (never more than
    reserved: `at_percent` of a smaller amount is never larger)."""
    from_allowance = min(amount, record.reserved_allowance)
    rest = at_percent(amount - from_allowance, record.overage_percent)
    from_credits = min(rest, record.reserved_credits)
    from_overage = min(rest - from_credits, record.reserved_overage)
    return Split(from_allowance, from_credits, from_overage)


def _release(record: UsageRecord, paid: Split, billed: costs.Billed) -> None:
    plan_reserved, plan_used = record.reserved_allowance, paid.allowance
    if record.subscription_usage_id is not None:
        listing_subscriptions.release(
            record.subscription_usage_id, record.reserved_allowance, paid.allowance
        )
        plan_reserved = plan_used = ZERO
    settlement = counters.Settlement(
        allowance_reserved=plan_reserved,
        paid_reserved=record.reserved_paid,
        allowance_used=plan_used,
        credits_used=paid.credits,
        overage_used=paid.overage,
        requests=billed.requests,
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
    )
    counters.settle_period(record.period_id, settlement)
    if record.reserved_credits:
        BillingAccount.objects.filter(org_id=record.org_id).update(
            credits_reserved=F("credits_reserved") - record.reserved_credits
        )
    if paid.credits:
        credits.change_balance(
            record.org,
            -paid.credits,
            CreditEntry.Kind.USAGE,
            reference=f"usage:{record.prediction_id}",
        )


def settle(prediction: Prediction) -> CallCost | None:
    """Writes the call's settlement entry (its `CallCost`) once and releases its
    reservation; a second settle (a retried finish) finds the entry and does nothing."""
    # The period's lock, which the org's admissions wait for, is held from here to commit.
    entry = counters.lock_entry(prediction.pk)
    if entry is None or entry[1]:
        return None
    record = entry[0]
    output_tokens = delivered_output_tokens(prediction)
    billed = costs.Billed(
        input_tokens=prediction.input_tokens,
        output_tokens=output_tokens,
        seconds=costs.billed_seconds(prediction),
        requests=1 if _counts_as_request(prediction, output_tokens) else 0,
    )
    # As reserved: the entry names the price row it was admitted at, none for a free call
    # (a price recorded later, even one backdated to before the call, never applies).
    price = record.price or free_price(prediction.model)
    amount = costs.amount_for(price, billed)
    paid = Split()
    if record.metered:
        paid = _pay(min(amount, record.max_cost), record)
        # The receipt's amount is what the customer is charged (a subscription's rate
        # beyond its included usage applied): the royalty and spend ledgers add it up.
        amount = paid.charged
    _release(record, paid, billed)
    by_subscription = record.subscription_usage_id is not None
    receipt = costs.record_cost(prediction, price, billed, amount, paid, by_subscription)
    royalties.record_call(receipt, prediction.model)
    # After commit: the period's lock (which every admission of the org waits for) is
    # held no longer than the counters need; alerts and top-ups are once-only by their
    # own unique key and claim, and a failure of either (logged) never fails the call.
    if (paid.allowance and not by_subscription) or paid.paid:
        transaction.on_commit(partial(_check_alerts, record), robust=True)
    if paid.credits:
        top_up = partial(credit_purchases.maybe_start_top_up, record.org_id)
        transaction.on_commit(top_up, robust=True)
    return receipt


@transaction.atomic
def _check_alerts(record: UsageRecord) -> None:
    """50/80/100% of the plan's allowance and of the spend cap, once each per period."""
    period = UsagePeriod.objects.get(pk=record.period_id)
    plan = plans.plan_state(record.org).plan
    account = BillingAccount.objects.filter(org_id=record.org_id).first()
    alerts.check_thresholds(
        period,
        plan.allowance if plan is not None else None,
        account.spend_cap if account is not None else None,
    )
