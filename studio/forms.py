from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from studio.models import Role


class WorkspaceForm(forms.Form):
    name = forms.CharField(
        label="Workspace name",
        max_length=64,
        help_text="A name your team recognises, e.g. “Vision research”.",
    )


class TokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=64,
        help_text="Say where it is used, e.g. “laptop CLI” or “nightly pipeline”.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[
            ("7", "In 7 days"),
            ("30", "In 30 days"),
            ("90", "In 90 days"),
            ("365", "In a year"),
            ("", "Never"),
        ],
        coerce=int,
        empty_value=None,
        required=False,
        initial="90",
        help_text="After this the token is refused; create a new one then.",
    )
    read_only = forms.BooleanField(
        label="Read only",
        required=False,
        help_text="The token can list and download (runs, logs, files) but cannot submit, "
        "cancel or change anything.",
    )

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data["expires_in_days"]
        return None if days is None else timezone.now() + timedelta(days=days)


class MemberAddForm(forms.Form):
    """Who to add: `user` in cleaned_data is the matching user, or None.

    An owner who is not staff gives the user name and the e-mail address, and is never
    told whether they matched anyone, so the form does not reveal which user names exist.
    """

    username = forms.CharField(label="User name", max_length=150)
    email = forms.EmailField(
        label="Their e-mail address",
        required=False,
        help_text="As it is on their account. Both must match, so that this form tells "
        "nobody which user names exist.",
    )
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.READER)

    def __init__(self, *args: Any, staff: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staff = staff
        if staff:
            self.fields["email"].help_text = "Optional for staff: the user name is enough."
        else:
            self.fields["email"].required = True

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        username, email = cleaned.get("username"), cleaned.get("email")
        if not username:
            return cleaned
        users = get_user_model().objects.filter(username=username, is_active=True)
        if email:
            users = users.filter(email__iexact=email)
        cleaned["user"] = users.first()
        if cleaned["user"] is None and self.staff:
            self.add_error(
                "username",
                f"No active user called “{username}”"
                f"{' with that e-mail address' if email else ''}. "
                "An administrator creates users at /admin/.",
            )
        return cleaned

    def added_message(self) -> str:
        """What the owner who asked is told once the form's user was added (or, for a
        non-staff owner, was perhaps added): the same words whether or not anyone matched."""
        username, role = self.cleaned_data["username"], Role(self.cleaned_data["role"])
        if self.staff:
            return f"{username} is now {role.label}."
        return (
            f"If a user called {username} has the e-mail address {self.cleaned_data['email']}, "
            f"they are now {role.label} and listed among the members. Not listed? Check both "
            "with them, or ask an administrator."
        )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices, required=False)
    remove = forms.BooleanField(required=False)
