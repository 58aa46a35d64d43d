from datetime import datetime, timedelta

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
    username = forms.CharField(label="Username", max_length=150)
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.READER)

    def clean_username(self):
        username = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(
                f"No user called “{username}”. An administrator creates users at /admin/."
            )
        return user


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices, required=False)
    remove = forms.BooleanField(required=False)
