"""TLS for HTTP and gRPC, with a self-signed certificate, in a Ray of its own."""
import json
import subprocess
import sys

from tests.conftest import ROOT


def test_tls_on_both_protocols():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "tls_scenario.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report == {
        "https_status": 200, "https_items": 3, "plain_http_refused": True, "untrusted_cert_refused": True,
        "grpc_tls_items": 3, "grpc_tls_bad_input": "INVALID_ARGUMENT", "grpc_tls_no_key": "UNAUTHENTICATED",
        "grpc_tls_health": "SERVING", "plaintext_grpc_refused": True,
        "grpc_tls_watch": "SERVING", "grpc_tls_stream": [["cart_abandonment", "tls-cart", ["i0003"]]],
        "grpc_tls_stream_bad_input": "INVALID_ARGUMENT",
    }
