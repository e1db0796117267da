from __future__ import annotations

from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView

from tunnels import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("admin", RedirectView.as_view(url="/admin/", permanent=False)),
    path("api/status", views.relay_status, name="relay-status"),
    path("api/tunnels/<str:name>/status", views.tunnel_status, name="tunnel-status"),
    path("api/tunnels/<str:name>", views.tunnel_detail, name="tunnel-detail"),
    path("", views.index, name="index"),
    # localtunnel's `GET /<name>`: exactly one path segment asks for that subdomain.
    re_path(r"^(?P<name>[^/]+)/?$", views.register_named, name="register"),
]
