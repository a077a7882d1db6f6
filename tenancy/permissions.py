from rest_framework.permissions import SAFE_METHODS, BasePermission

from mlops.exceptions import AccessDenied, NotAuthenticated


class HasWorkspaceRole(BasePermission):
    """Any role reads; only editors and admins write. Errors say which role was missing."""

    def has_permission(self, request, view):
        principal = request.user
        if principal is None:
            raise NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
        if request.method in SAFE_METHODS or principal.can_write:
            return True
        raise AccessDenied(
            f"Your role '{principal.role}' in this workspace is read-only; writing needs 'editor' or 'admin'."
        )
