import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from studio.models import ApiToken, Membership, Role, Workspace, hash_token
from studio.signals import workspace_created


@transaction.atomic
def workspace_create(*, name: str, owner: User) -> Workspace:
    base = slugify(name)[:50] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    workspace = Workspace.objects.create(name=name, slug=slug)
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    workspace_created.send(sender=Workspace, workspace=workspace, owner=owner)
    return workspace


LAST_OWNER = "A workspace needs at least one owner: make someone else owner first."


def _is_last_owner(workspace: Workspace, user: User) -> bool:
    owners = Membership.objects.filter(workspace=workspace, role=Role.OWNER)
    return owners.count() == 1 and owners.filter(user=user).exists()


@transaction.atomic
def membership_set(*, workspace: Workspace, user: User, role: str) -> Membership:
    """Give `user` `role` in the workspace, adding them if need be; ValueError if that
    would leave the workspace without an owner."""
    if role != Role.OWNER and _is_last_owner(workspace, user):
        raise ValueError(LAST_OWNER)
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return membership


def membership_add(*, workspace: Workspace, user: User, role: str) -> bool:
    """Make `user` a member with `role`; False (and no change) if they already are one."""
    _, created = Membership.objects.get_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return created


@transaction.atomic
def membership_remove(*, workspace: Workspace, user: User) -> None:
    if _is_last_owner(workspace, user):
        raise ValueError(LAST_OWNER)
    Membership.objects.filter(workspace=workspace, user=user).delete()


def token_create(
    *, user: User, name: str, expires_at: datetime | None = None, read_only: bool = False
) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and never stored."""
    raw = ApiToken.new_raw()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=raw[:10],
        token_hash=hash_token(raw),
        expires_at=expires_at,
        read_only=read_only,
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


class TokenExpired(Exception):
    pass


def token_authenticate(raw: str) -> ApiToken | None:
    """The active token `raw` is, of an active user, or None; TokenExpired past its expiry."""
    token = (
        ApiToken.objects.active().select_related("user").filter(token_hash=hash_token(raw)).first()
    )
    if token is None or not token.user.is_active:
        return None
    if token.is_expired:
        raise TokenExpired(
            f"This token ({token.name}) expired on {token.expires_at:%Y-%m-%d %H:%M} UTC: "
            "create a new one in Settings → Access tokens."
        )
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


@transaction.atomic
def first_admin_create() -> tuple[str, str] | None:
    """On the very first start: an admin with a generated password and a workspace.

    Returns (username, password) once; None when users already exist.
    """
    User = get_user_model()
    if User.objects.exists():
        return None
    password = secrets.token_urlsafe(12)
    admin = User.objects.create_superuser(username="admin", password=password, email="")
    workspace_create(name="Default", owner=admin)
    return admin.username, password
