"""Schema fuzzing: schemathesis generates requests from the service's own OpenAPI schema, valid ones and
deliberately invalid ones, and sends them to the live server with a valid key. No input may produce
a 5xx, and every 4xx must be an RFC 9457 problem (`application/problem+json` whose `status` is the
response's).

Bounded and repeatable: hypothesis is derandomized (the same examples on every run for the same
schema), with no example database, no shrinking and no deadline; each operation gets at most
`MAX_EXAMPLES` examples and an equal share of `BUDGET_S`, after which its remaining examples are
skipped without a request (printed, so a slow machine shows). It covers the operations the schema
has when it runs. The embedded worker is held idle, so a search the fuzzer manages to submit is
never trained. The SSE endpoint stays in: a fuzzed search id never names an existing search, so it
answers 404 at once instead of streaming; a request timeout still guards against a stream.

    HWNAS_FUZZ_EXAMPLES=200 pytest -q tests/api/test_schema_fuzz.py -s    # fuzz harder, locally
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode

MAX_EXAMPLES = int(os.environ.get("HWNAS_FUZZ_EXAMPLES", "25"))
MIN_EXAMPLES = 5  # sent whatever the time budget says
BUDGET_S = float(os.environ.get("HWNAS_FUZZ_BUDGET_S", "75"))
REQUEST_TIMEOUT_S = 30.0
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def idle_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the live server's embedded worker idle (request it before `live_server`)."""
    import nas.worker

    def wait_for_stop(*args, stop, **kwargs) -> int:
        stop.wait()
        return 0

    monkeypatch.setattr(nas.worker, "run_worker", wait_for_stop)


SERVER_REFUSAL = b"Invalid HTTP request received."


@dataclass
class Findings:
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, what) -> one example
    sent: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)

    def fail(self, operation: str, what: str, detail: str) -> None:
        self.failures.setdefault((operation, what), detail)


def problem_violation(response) -> str | None:
    """Why a 4xx response is not a problem+json document, or None when it is one."""
    values = response.headers.get("content-type") or [""]  # schemathesis: header name -> list of values
    content_type = values[0] if isinstance(values, list) else values
    if response.status_code == 400 and response.content.strip() == SERVER_REFUSAL:
        # The HTTP server itself (uvicorn's h11) refused a request that breaks HTTP (e.g. a Content-Length
        # that is not a number) before any application code ran: nothing the app could answer.
        return None
    if not content_type.startswith(PROBLEM_JSON):
        return f"4xx with content-type {content_type!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "4xx problem body is not JSON"
    if not isinstance(body, dict) or body.get("status") != response.status_code or not body.get("title"):
        return "4xx problem body lacks title or a matching status"
    return None


def fuzz_operation(operation, headers: dict[str, str], deadline: float, findings: Findings) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    modes = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    try:
        modes.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    except Exception:  # noqa: BLE001 - an operation without inputs has no invalid form
        pass

    @given(case=st.one_of(*modes))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    def run(case) -> None:
        if findings.sent[label] >= MIN_EXAMPLES and time.monotonic() > deadline:
            findings.skipped[label] += 1
            return
        findings.sent[label] += 1
        try:
            response = case.call(headers=headers, timeout=REQUEST_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - a dropped connection or a timeout is a finding
            findings.fail(label, type(error).__name__, case.as_curl_command(headers=headers))
            return
        status = response.status_code
        findings.statuses[status] += 1
        if status >= 500:
            findings.fail(label, f"{status}", f"{case.as_curl_command(headers=headers)}\n{response.text[:500]}")
        elif 400 <= status < 500:
            why = problem_violation(response)
            if why is not None:
                findings.fail(label, why, f"{case.as_curl_command(headers=headers)}\n{response.text[:300]}")

    run()


def _restore_default_floating_point_environment() -> None:
    """Clear flush-to-zero / denormals-are-zero on this thread.

    The LUT's timing sessions ask ONNX Runtime for `session.set_denormal_as_zero` (so timings never
    hit the slow subnormal path); ORT sets those MXCSR bits on the calling thread, which in a full
    test run is this one. Hypothesis then refuses to generate floats ("can't represent subnormal
    floats"). glibc's `fesetenv(FE_DFL_ENV)` restores the default environment, MXCSR included.
    """
    import ctypes
    import ctypes.util

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    fe_dfl_env = ctypes.c_void_p(-1)  # glibc: #define FE_DFL_ENV ((const fenv_t *) -1)
    assert libm.fesetenv(fe_dfl_env) == 0


def test_fuzzed_requests_get_no_5xx_and_problem_json_4xx(idle_worker, live_server, capsys) -> None:
    _restore_default_floating_point_environment()
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [f"{o.method} {o.path}" for o in operations]
    headers = {"Authorization": f"Bearer {live_server.tokens['alice']}"}
    findings = Findings()
    started = time.monotonic()
    for index, operation in enumerate(operations):
        remaining = BUDGET_S - (time.monotonic() - started)
        deadline = time.monotonic() + max(remaining, 0.0) / (len(operations) - index)
        fuzz_operation(operation, headers, deadline, findings)
    elapsed = time.monotonic() - started

    with capsys.disabled():
        print(
            f"\nschema fuzz: {len(operations)} operations, {sum(findings.sent.values())} requests in {elapsed:.1f} s "
            f"(responses by class: {dict(sorted(findings.statuses.items()))})"
        )
        for label, count in sorted(findings.skipped.items()):
            print(f"  {label}: {count} examples skipped (time budget)")
    # Every operation was exercised, and the fuzzer reached past validation somewhere.
    assert all(findings.sent[f"{o.method.upper()} {o.path}"] > 0 for o in operations), findings.sent
    assert findings.statuses[200] > 0 and findings.statuses[422] > 0
    assert not findings.failures, "\n\n".join(
        f"{op}: {what}\n{detail}" for (op, what), detail in findings.failures.items()
    )
