import pytest
from playwright.sync_api import expect

from tests.services.live_stack import login

pytestmark = pytest.mark.e2e


def test_login_and_see_home(page, live_stack):
    page.goto(live_stack.url)
    expect(page).to_have_url(f"{live_stack.url}/login/?next=/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")

    login(page, live_stack, "bob")
    expect(page.get_by_role("heading", level=1)).to_have_text("Vision")
    nav = page.get_by_role("navigation", name="Studio")
    for label in ("Home", "Experiments", "Runs", "Compute", "Environments", "Settings"):
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    # The stack is shared by the e2e tests, so runs may exist: both panels are there either way.
    expect(page.get_by_role("heading", name="Recent runs")).to_be_visible()
    expect(page.get_by_role("heading", name="Compute")).to_be_visible()
    expect(page.get_by_role("link", name="local", exact=True)).to_be_visible()
    expect(page.get_by_label("Workspace")).to_have_value(f"/w/{live_stack.workspace_slug}/")
