from dataclasses import dataclass, field


class Role:
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"
    WRITERS = frozenset({EDITOR, ADMIN})
    ALL = frozenset({VIEWER, EDITOR, ADMIN})


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the platform vouched for it: user, tenant, workspace and role."""

    user_id: str
    email: str
    tenant_schema: str
    workspace_id: str
    role: str
    database: str
    expires_at: int
    scopes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def can_write(self) -> bool:
        return self.role in Role.WRITERS

    # DRF treats request.user as truthy when authenticated.
    @property
    def is_authenticated(self) -> bool:
        return True
