"""A real etcd server for tests (Debian ``etcd-server``; ``scripts/bootstrap --tests`` installs it).

`EtcdServer` runs the ``etcd`` binary on free 127.0.0.1 ports with a private temporary data
directory, waits until ``/health`` answers ``"health":"true"``, and stops it by PID (SIGTERM, or
SIGKILL for a crash). `restart()` reuses the same ports and data directory, so keys,
revisions and leases survive it the way they survive a real restart. `cleanup()` stops the
process and removes the data directory.

Every test gets its own key prefix (`unique_prefix`), so tests sharing one server never see
each other's keys.

`EtcdServer(tls=make_tls_files(dir))` serves https with client-certificate authentication
(a throw-away CA, a server certificate for 127.0.0.1 and one client certificate).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from support.servers import free_port

ETCD_BINARY = os.environ.get("TRACKYARD_ETCD_BINARY") or shutil.which("etcd") or "/usr/bin/etcd"


def etcd_available() -> bool:
    return os.access(ETCD_BINARY, os.X_OK)


def unique_prefix(name: str = "t") -> str:
    """A key prefix no other test uses, e.g. ``/test-placement-3f9c1a2b/``."""
    return f"/test-{name}-{uuid.uuid4().hex[:8]}/"


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate (IP 127.0.0.1) and a client certificate, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key, cert) -> tuple[str, str]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("trackyard test CA")).issuer_name(name("trackyard test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_path, _ = write("ca", ca_key, ca)
    server = write("server", *leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]))
    client = write("client", *leaf("trackyard", ExtendedKeyUsageOID.CLIENT_AUTH))
    return TlsFiles(ca_path, server[0], server[1], client[0], client[1])


class EtcdServer:
    """One single-member etcd on loopback; see the module docstring."""

    def __init__(self, *, tls: TlsFiles | None = None, host: str = "127.0.0.1", client_port: int = 0,
                 peer_port: int = 0) -> None:
        """`host` and fixed ports: for an etcd started elsewhere from `_argv` (e.g. in a lab
        namespace by `support.cluster_lab`); `start` serves on loopback."""
        self.tls = tls
        self.host = host
        self._dir = Path(tempfile.mkdtemp(prefix="trackyard-etcd-"))
        self.data_dir = self._dir / "data"
        self.log_path = self._dir / "etcd.log"
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint(self) -> str:
        """``host:port`` as trackyard's ``etcd.endpoints`` takes it."""
        return f"{self.host}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    def _argv(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        return [
            ETCD_BINARY,
            "--name", "test",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"trackyard-{uuid.uuid4().hex[:8]}",
            "--logger", "zap",
            "--log-outputs", "stderr",
            "--log-level", "warn",
            *([] if self.tls is None else [
                "--cert-file", self.tls.server_cert, "--key-file", self.tls.server_key,
                "--trusted-ca-file", self.tls.ca, "--client-cert-auth",
            ]),
        ]

    def start(self, timeout: float = 20.0) -> "EtcdServer":
        if self.alive():
            return self
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._argv(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.logs()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop(kill=True)
        raise TimeoutError(f"etcd did not become healthy within {timeout}s:\n{self.logs()}")

    def healthy(self) -> bool:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=self.tls.ca)
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5, context=context) as resp:  # noqa: S310
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the process by PID: SIGTERM (SIGKILL with ``kill=True`` or after ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, *, kill: bool = False) -> "EtcdServer":
        self.stop(kill=kill)
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
