"""The request inspector on two nodes (PostgreSQL, Redis): the captures live on the node that
owns the tunnel, and any node forwards the owner's calls there (relay/cluster/hop.py), where
the owner's session or token is checked against the shared database."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

import pytest
from harness.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

SETUP = (
    "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
    "from django.contrib.auth.models import User\n"
    "from django.contrib.sessions.backends.db import SessionStore\n"
    "from tunnels.models import ApiToken\n"
    "owner = User.objects.create_user('inspecting-owner')\n"
    "other = User.objects.create_user('inspecting-other')\n"
    "session = SessionStore()\n"
    "session[SESSION_KEY] = str(owner.pk)\n"
    "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
    "session[HASH_SESSION_KEY] = owner.get_session_auth_hash()\n"
    "session.create()\n"
    "print('OWNER', ApiToken.issue(owner)[1], 'OTHER', ApiToken.issue(other)[1],"
    " 'SESSION', session.session_key)\n"
)


@pytest.fixture(scope="module")
def accounts(cluster) -> dict[str, str]:
    words = cluster.manage("shell", "-c", SETUP).split()
    return {key: words[words.index(key) + 1] for key in ("OWNER", "OTHER", "SESSION")}


def test_the_owner_reads_and_replays_through_the_other_node_and_others_are_refused_on_both(
    two_nodes, accounts, local_app, our_launcher
) -> None:
    alpha, bravo = two_nodes
    name = our_launcher(alpha, local_app.port, "--token", accounts["OWNER"]).name
    wait_until(  # bravo learns the owner by a message: its status API is forwarded, not kept
        lambda: bravo.get(f"/api/tunnels/{name}/status").status == 200, 5, "bravo to know it"
    )
    assert bravo.request("POST", "/sha256", name=name, body=b"through bravo").status == 200
    csrf = secrets.token_hex(16)  # Django takes a 32-character secret as cookie and header
    session = [("Cookie", f"sessionid={accounts['SESSION']}; csrftoken={csrf}")]
    listed = bravo.get(f"/api/tunnels/{name}/requests", headers=session)
    assert listed.status == 200, listed
    (summary,) = listed.json()["requests"]
    assert (summary["method"], summary["path"], summary["request_bytes"]) == ("POST", "/sha256", 13)
    edits = json.dumps({"body_b64": base64.b64encode(b"edited").decode()}).encode()
    replayed = bravo.request(
        "POST",
        f"/api/tunnels/{name}/requests/{summary['id']}/replay",
        headers=[*session, ("X-CSRFToken", csrf), ("Content-Type", "application/json")],
        body=edits,
    )
    assert replayed.status == 200, replayed
    answer = json.loads(base64.b64decode(replayed.json()["response"]["body_b64"]))
    assert answer["sha256"] == hashlib.sha256(b"edited").hexdigest()
    kept = alpha.get(f"/api/tunnels/{name}/requests", headers=session).json()["requests"]
    assert [c["replay_of"] for c in kept] == [summary["id"], None]  # on the owner node
    for node in (alpha, bravo):
        for path in ("requests", f"requests/{summary['id']}"):
            refused = node.get(
                f"/api/tunnels/{name}/{path}",
                headers=[("Authorization", f"Bearer {accounts['OTHER']}")],
            )
            assert refused.status == 404, (node.name, refused)
            assert "through bravo" not in refused.text
        anonymous = node.get(f"/api/tunnels/{name}/requests")
        assert anonymous.status == 401, (node.name, anonymous)
