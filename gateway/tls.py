"""TLS for both protocols.

HTTP: Serve's HTTP proxy serves HTTPS itself (``ssl_certfile`` / ``ssl_keyfile``).
gRPC: Serve's gRPC proxy has no TLS option, so a small TLS front (a Ray actor running a
``grpc.aio`` server) listens on the public gRPC port, terminates TLS and forwards each call,
bytes, metadata, deadline and status untouched, to Serve's gRPC proxy on loopback.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import ray

# Metadata that belongs to the transport, not to the caller; never forwarded.
_HOP_BY_HOP = {"user-agent", "grpc-accept-encoding", "grpc-encoding", "grpc-timeout", "te", "content-type"}


def write_self_signed(directory: str | Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
                      days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``hosts`` (development and tests). Returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.aio.Channel):
        self._channel = channel

    def service(self, details):
        upstream = self._channel.unary_unary(details.method)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = tuple((k, v) for k, v in (context.invocation_metadata() or ())
                             if k not in _HOP_BY_HOP and not k.startswith(":"))
            try:
                return await upstream(request, metadata=metadata, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "")

        return grpc.unary_unary_rpc_method_handler(forward)


@ray.remote(num_cpus=0, max_restarts=-1)
class GrpcTlsFront:
    """Terminates TLS on ``listen`` and forwards unary calls to ``upstream`` (Serve's gRPC proxy)."""

    def __init__(self, listen: str, upstream: str, cert_pem: bytes, key_pem: bytes):
        self._listen, self._upstream = listen, upstream
        self._credentials = (cert_pem, key_pem)
        self._server = None

    async def start(self) -> str:
        if self._server is None:
            channel = grpc.aio.insecure_channel(self._upstream)
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((_Forward(channel),))
            cert_pem, key_pem = self._credentials
            server.add_secure_port(self._listen, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
            await server.start()
            self._server = server
        return self._listen

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
