"""TLS on both protocols against a real daemon, with a CA and server certificate made here.

The SDK verifies by default: with the CA (``ca_file``) it works over REST and gRPC;
without it, it fails with a clear certificate error; plain HTTP to the TLS port fails
cleanly and the daemon keeps serving.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb import errors

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

DIM = 4
KEY = "tls-test-key-0a9b8c"


def _name(common: str) -> Any:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a self-signed CA and a server cert for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("ProximaDB test CA")).issuer_name(_name("ProximaDB test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class TlsDaemon(Daemon):
    """The harness's daemon, with its readiness probe over HTTPS."""

    ca_file: Path

    @property
    def rest_url(self) -> str:
        return f"https://127.0.0.1:{self.rest_port}"

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return http.client.HTTPSConnection("127.0.0.1", self.rest_port, timeout=timeout, context=context)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDaemon]:
    root = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certs(root)
    d = TlsDaemon(root / "data", "--tls-cert", str(cert), "--tls-key", str(key), "--api-key", KEY)
    d.ca_file = ca
    with d:
        yield d


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_sdk_with_ca_file_works(daemon: TlsDaemon, protocol: str) -> None:
    ca = str(daemon.ca_file)
    if protocol == "grpc":
        client = proximadb.connect_grpc(daemon.grpc_target, tls=True, ca_file=ca, api_key=KEY)
    else:
        client = proximadb.connect_rest(daemon.rest_url, ca_file=ca, api_key=KEY)
    name = f"tls-{protocol}"
    with client as c:
        assert c.protocol == protocol
        c.create_collection(name, DIM)
        c.insert_vector(name, np.ones(DIM, np.float32), id="a")
        assert c.search(name, np.ones(DIM, np.float32), k=1)[0]["id"] == "a"
        with pytest.raises(errors.AuthenticationError):  # TLS and keys together
            (proximadb.connect_rest(daemon.rest_url, ca_file=ca, api_key="wrong") if protocol == "rest" else
             proximadb.connect_grpc(daemon.grpc_target, ca_file=ca, api_key="wrong")).count(name)


def test_connect_https_probes_grpc_with_tls(daemon: TlsDaemon) -> None:
    with proximadb.connect(daemon.rest_url, ca_file=str(daemon.ca_file), api_key=KEY) as c:
        assert c.protocol == "grpc"
        c.list_collections()
    with proximadb.connect(f"grpcs://{daemon.grpc_target}", ca_file=str(daemon.ca_file), api_key=KEY) as c:
        assert c.protocol == "grpc"


def test_without_the_ca_verification_fails_clearly(daemon: TlsDaemon) -> None:
    with pytest.raises(errors.UnavailableError, match=r"(?i)certificate.*ca_file="):
        proximadb.connect_rest(daemon.rest_url, api_key=KEY)
    with pytest.raises(errors.UnavailableError, match=r"(?i)ca_file="):
        proximadb.connect_grpc(daemon.grpc_target, tls=True, api_key=KEY, timeout=5)
    with proximadb.connect_rest(daemon.rest_url, api_key=KEY, verify=False) as c:  # an explicit opt-out
        assert c.health()["status"] == "ok"


def test_plain_protocols_to_the_tls_ports_fail_cleanly(daemon: TlsDaemon) -> None:
    plain_url = daemon.rest_url.replace("https://", "http://")
    with pytest.raises(errors.UnavailableError):
        proximadb.connect_rest(plain_url, api_key=KEY, timeout=5)
    with pytest.raises(errors.UnavailableError):
        proximadb.connect_grpc(daemon.grpc_target, api_key=KEY, timeout=5)  # no TLS
    assert daemon.health() is not None  # still serving
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "https://127.0.0.1" in daemon.logs()


def test_the_async_client_verifies_too_and_connects_over_tls(daemon: TlsDaemon) -> None:
    import asyncio

    from proximadb.sdk import connect_async_grpc, connect_async_rest

    ca = str(daemon.ca_file)

    async def main() -> None:
        async with proximadb.connect_async(daemon.rest_url, ca_file=ca, api_key=KEY) as c:
            assert c.protocol == "grpc" and c.url.startswith("grpcs://")
            await c.create_collection("tls-async", DIM)
            await c.insert_vector("tls-async", np.ones(DIM, np.float32), id="a")
        async with connect_async_rest(daemon.rest_url, ca_file=ca, api_key=KEY) as r:
            assert (await r.search("tls-async", np.ones(DIM, np.float32), k=1))[0]["id"] == "a"
        async with connect_async_rest(daemon.rest_url, ca_file=ca, api_key="wrong") as wrong:
            with pytest.raises(errors.AuthenticationError):  # TLS and keys together (health needs no key)
                await wrong.count("tls-async")
        with pytest.raises(errors.UnavailableError, match=r"(?i)certificate.*ca_file="):
            await connect_async_rest(daemon.rest_url, api_key=KEY, retries=0)
        with pytest.raises(errors.UnavailableError, match=r"(?i)ca_file="):
            await connect_async_grpc(daemon.grpc_target, tls=True, api_key=KEY, timeout=5, retries=0)
        async with connect_async_rest(daemon.rest_url, api_key=KEY, verify=False) as unverified:
            assert (await unverified.health())["status"] == "ok"

    asyncio.run(main())
