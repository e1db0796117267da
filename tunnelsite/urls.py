from __future__ import annotations

from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView

from relay import protocol
from tunnels import (
    account,
    csp,
    dashboard,
    device,
    inspect_api,
    inspector,
    metrics_view,
    reports,
    signin,
    signup,
    views,
)

# Routes at `/<one segment>` answer tunnel clients (npm, our lt) with the reserved-name
# refusal, since `GET /<name>` is also how they register `name` (tunnels/views.py).
urlpatterns = [
    # The relay's live dashboard, staff only (admin_view), before the admin's own catch-all.
    path("admin/dashboard/", admin.site.admin_view(dashboard.page), name="relay-dashboard"),
    path(
        "admin/dashboard/data", admin.site.admin_view(dashboard.data), name="relay-dashboard-data"
    ),
    path(
        "admin/dashboard/disconnect",
        admin.site.admin_view(dashboard.disconnect),
        name="relay-dashboard-disconnect",
    ),
    # One limit on failed sign-ins for both forms (tunnels/signin.py), before the admin's.
    path("admin/login/", signin.limit_failed_signins(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
    path("admin", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    # Prometheus (docs/metrics.md): behind RELAY_METRICS_TOKEN as a bearer token.
    path(protocol.METRICS_PATH.lstrip("/"), metrics_view.metrics, name="metrics"),
    path("api/status", views.relay_status, name="relay-status"),
    path("api/tunnels/<str:name>/status", views.tunnel_status, name="tunnel-status"),
    # The request inspector (relay.protocol.INSPECT_PATH): the tunnel API, so a cluster node
    # forwards it to the owner node like the status.
    path("api/tunnels/<str:name>/requests", inspect_api.list_captures, name="inspect-list"),
    path(
        "api/tunnels/<str:name>/requests/<int:capture_id>",
        inspect_api.capture_detail,
        name="inspect-detail",
    ),
    path(
        "api/tunnels/<str:name>/requests/<int:capture_id>/replay",
        inspect_api.replay,
        name="inspect-replay",
    ),
    # `lt login` in the browser (relay.protocol.DEVICE_*; RFC 8628).
    path(protocol.DEVICE_CODE_PATH.lstrip("/"), device.code, name="device-code"),
    path(protocol.DEVICE_TOKEN_PATH.lstrip("/"), device.token, name="device-token"),
    path(protocol.DEVICE_VERIFY_PATH.lstrip("/"), csp.strict(device.verify), name="device-verify"),
    # The account page of every user (tunnels/account.py), the admin being the operators'.
    path("account/", csp.strict(account.page), name="account"),
    path("account/data", csp.strict(account.data), name="account-data"),
    path("account/tokens", csp.strict(account.create_token), name="account-tokens"),
    path(
        "account/tokens/<int:pk>/revoke",
        csp.strict(account.revoke_token),
        name="account-token-revoke",
    ),
    path("account/names", csp.strict(account.reserve_name), name="account-names"),
    path(
        "account/names/<int:pk>/release",
        csp.strict(account.release_name),
        name="account-name-release",
    ),
    path("account/tunnels/<str:name>/", csp.strict(inspector.page), name="account-tunnel"),
    path("accounts/signup/", csp.strict(signup.SignUp.as_view()), name="signup"),
    path("api/tunnels/<str:name>", views.tunnel_detail, name="tunnel-detail"),
    # Visitors: the team-only tunnel's sign-in (relay.protocol.TEAM_SIGNIN_PATH), the user's
    # sign-in and sign-out, and the warning page's abuse report (ABUSE_REPORT_PATH).
    path(protocol.TEAM_SIGNIN_PATH.lstrip("/"), signin.visit, name="visit"),
    path(
        "accounts/login/",
        csp.strict(signin.limit_failed_signins(signin.SignIn.as_view()), to_tunnels=True),
        name="signin",
    ),
    path("accounts/logout/", signin.SignOut.as_view(), name="signout"),
    path(protocol.ABUSE_REPORT_PATH.lstrip("/"), reports.report, name="report"),
    path("", views.index, name="index"),
    # localtunnel's `GET /<name>`: exactly one path segment asks for that subdomain.
    # Browsers ask every site for this; it is not a subdomain registration.
    path("favicon.ico", views.no_favicon),
    re_path(r"^(?P<name>[^/]+)/?$", views.register_named, name="register"),
]
urlpatterns = views.guard_bare_routes(urlpatterns)
