"""A NUL character in an address, a query, a form or a JSON body is refused with a 400 that says
so, before any lookup: PostgreSQL cannot store one and would answer a server error."""

import pytest


@pytest.mark.parametrize(
    "url",
    [
        "/w/{slug}/compute/gpu%00/",
        "/w/{slug}/runs/?status=Failed%00",
        "/w/{slug}/experiments/a%00/",
    ],
)
def test_pages_refuse_a_nul_character(workspace, as_alice, url):
    response = as_alice.get(url.format(slug=workspace.slug))
    assert response.status_code == 400
    assert "holds a NUL character" in response.content.decode()


def test_the_api_refuses_a_nul_character_in_the_query_and_in_a_json_body(workspace, api_alice):
    response = api_alice.get(f"/api/v1/runs?workspace={workspace.slug}&experiment=mnist%00")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The query string holds a NUL character")

    response = api_alice.post(
        f"/api/v1/experiments?workspace={workspace.slug}",
        {"name": "mnist", "description": "first\x00try"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The JSON body holds a NUL character")


def test_a_form_with_a_nul_character_is_refused(workspace, as_alice):
    response = as_alice.post(f"/w/{workspace.slug}/settings/", {"username": "bob\x00"})
    assert response.status_code == 400
    assert "The form holds a NUL character" in response.content.decode()
