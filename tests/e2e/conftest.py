"""Browser journeys against the live stack: uvicorn and a Celery worker on the test
database (tests/livestack.py), a recording fake of Stripe's hosted API, and a headless
Debian chromium driven by Playwright.

The stack is package-scoped: it starts with the first e2e test and stops after the last,
so its worker never competes with the integration stack's for the same queues."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from billing.demo import load_demo_plans
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from models_hub.versions import ensure_current_version
from tests.billing.conftest import STRIPE_KEY, WEBHOOK_SECRET, FakeStripe, _handler
from tests.conftest import PASSWORD
from tests.livestack import ROOT, Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = ROOT / "artifacts" / "e2e"
SMOLLM2 = "smollm2-135m-instruct"
# A cap on SmolLM2's output keeps CPU runs short; runs ask for fewer or exactly this.
GENERATION_CAP = 96
# Django's console e-mail backend ends every message with a line of 79 dashes.
MAIL_SEPARATOR = "-" * 79


@dataclass
class MailLog:
    """The web process's stdout, where the console e-mail backend prints every message."""

    path: Path

    def messages(self) -> list[str]:
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return [chunk for chunk in text.split(MAIL_SEPARATOR) if "Subject:" in chunk]

    def link_to(self, recipient: str, path_pattern: str, timeout: float = 30) -> str:
        """The newest link whose path matches `path_pattern` in a message to `recipient`."""
        link = re.compile(r"https?://[^\s\"'<>]+" + path_pattern + r"[^\s\"'<>]*")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.messages()):
                found = link.search(message)
                if found and re.search(rf"^To: .*{re.escape(recipient)}", message, re.M):
                    return found.group(0)
            time.sleep(0.2)
        raise AssertionError(f"no e-mail to {recipient} with a link to {path_pattern}")


@pytest.fixture(scope="package")
def fake_stripe() -> Iterator[FakeStripe]:
    """Stripe's hosted API as the web process sees it (STRIPE_API_BASE points here): the
    billing tests' recording fake, served from this process on its own port."""
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="package")
def mail_log(tmp_path_factory) -> MailLog:
    return MailLog(tmp_path_factory.mktemp("e2e-mail") / "web-stdout.log")


@pytest.fixture(scope="package")
def live(django_db_setup, django_db_blocker, fake_stripe, mail_log) -> Iterator[Stack]:
    billing = {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake_stripe.url,
    }
    with (
        mail_log.path.open("w") as web_stdout,
        running_stack(django_db_blocker, extra_env=billing, web_stdout=web_stdout) as stack,
    ):
        yield stack


@pytest.fixture(scope="package")
def browser(live) -> Iterator[Browser]:
    """One chromium for the package's tests.

    Playwright's sync API keeps an asyncio loop registered as running in this thread
    from here on, which trips Django's async-safety check on every ORM call the tests,
    their fixtures and pytest-django's database flush make, although none of them runs
    inside that loop: the check is lifted for exactly as long as the loop exists. The
    stack starts first, so its processes do not inherit the setting.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (make test does)")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def new_context(browser, live) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh browser contexts (separate cookie jars) on the stack, closed after the test."""
    opened: list[BrowserContext] = []

    def make(**options) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(base_url=live.base_url, **options)
        context.set_default_timeout(30_000)
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()


@pytest.fixture
def page(new_context) -> Page:
    return new_context().new_page()


@pytest.fixture
def catalog(transactional_db) -> dict[str, ModelListing]:
    """The demo catalog and plans, as `manage.py load_demo` installs them, with SmolLM2's
    output capped so that every CPU run stays short."""
    listings = {listing.slug: listing for listing in load_demo_catalog()}
    load_demo_plans()
    smollm2 = listings[SMOLLM2]
    smollm2.max_params = {"max_new_tokens": GENERATION_CAP}
    smollm2.default_params = {**smollm2.default_params, "max_new_tokens": 24}
    smollm2.example_input = {**smollm2.example_input, "max_new_tokens": 24}
    smollm2.save(update_fields=["max_params", "default_params", "example_input"])
    ensure_current_version(smollm2)  # callers run versions: publish the capped one
    return listings


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_login", email)
    page.fill("#id_password", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard/")


def csrf_headers(context: BrowserContext) -> dict[str, str]:
    """What the site's own forms send, for POSTs made outside a form."""
    token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    return {"X-CSRFToken": token}
