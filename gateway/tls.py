"""TLS for both protocols.

``recsys serve`` answers both protocols with its own front (gateway/grpc_front.py,
gateway/http_front.py), which terminates TLS itself when a certificate is configured: HTTPS through
uvicorn's ``ssl_certfile`` / ``ssl_keyfile``, gRPC through the server's credentials, unary calls and
server streams alike. (Serve's gRPC proxy has no TLS option and binds every interface; Serve's HTTP
proxy listens on loopback only, behind the front.)
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


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
