"""Django's error reports never show the relay's secret headers: a technical 500 report (the
DEBUG page and the ADMINS mail are both rendered from it) for a registration carrying our
lt's visitor rules with a basic-auth password, and a pool secret."""

from __future__ import annotations

import json
import sys

from django.test import RequestFactory, SimpleTestCase
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from relay import protocol
from tunnels.reporting import ReporterFilter

PASSWORD = "hunter2-very-secret"
POOL_SECRET = "ab" * 32


class ErrorReportTests(SimpleTestCase):
    def report(self) -> tuple[str, str]:
        request = RequestFactory().get(
            "/my-app",
            headers={
                protocol.ACCESS_HEADER: json.dumps({"basic_auth": [f"alice:{PASSWORD}"]}),
                protocol.POOL_SECRET_HEADER: POOL_SECRET,
                "User-Agent": "lt-test-agent",
            },
        )
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            reporter = ExceptionReporter(request, *sys.exc_info())
        return reporter.get_traceback_html(), reporter.get_traceback_text()

    def test_the_filter_is_the_default(self) -> None:
        self.assertIsInstance(get_default_exception_reporter_filter(), ReporterFilter)

    def test_a_500_report_hides_the_rules_header_and_the_pool_secret(self) -> None:
        for rendered in self.report():
            self.assertNotIn(PASSWORD, rendered)
            self.assertNotIn(POOL_SECRET, rendered)
            self.assertIn("HTTP_X_TUNNELSITE_ACCESS", rendered)  # named, its value hidden
            self.assertIn("********", rendered)
            self.assertIn("lt-test-agent", rendered, "other headers are still shown")
