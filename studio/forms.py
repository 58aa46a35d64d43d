from django import forms
from django.contrib.auth import get_user_model

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
