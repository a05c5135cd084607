"""schemathesis against both servers' OpenAPI schemas, in process (loopback only).

For every operation of the classifier and the clusterer app (fitted on the synthetic
fixtures of ``tests/test_serve_app.py``), a bounded number of requests generated from
the schema are sent through the ASGI app; each answer must be no 5xx, carry a status
code the schema documents, the content type it documents and, for JSON, a body valid
against the documented schema.  Once without and once with an API key, so the
security scheme is in the schema exactly when a key is set.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.test_serve_app import (  # noqa: E402, F401  (session fixtures reused)
    classifier_dir,
    clusterer_dir,
    synthetic_root,
)

from pixsort.serve.app import create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25
API_KEY = "schema-test-key"


def operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the schema lists no operation"
    return found


def run_operation(operation, headers: dict | None = None) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


@pytest.mark.parametrize("kind", ["classifier", "clusterer"])
@pytest.mark.parametrize("with_key", [False, True], ids=["open", "api-key"])
def test_every_operation_conforms(kind, with_key, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    # schemathesis' ASGI client names the server "testserver": allowed like a loopback name
    keys = {"api_key": API_KEY} if with_key else {}
    app = create_app(folder, allowed_hosts=("testserver",), **keys)
    ops = operations(app)
    schema = app.openapi()
    has_security = "securitySchemes" in schema.get("components", {})
    assert has_security == with_key
    for operation in ops:
        run_operation(operation, headers={"X-API-Key": API_KEY} if with_key else None)
