"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

The venv has no ``cryptography``; the ``openssl`` CLI is on every machine that has Mosquitto.
Keys are P-256 (fast to make) and certificates carry the extensions Python's and OpenSSL's
strict verification want (a critical CA basic constraint, key usages, key identifiers), so
a refusal in a test is about trust, never about a sloppy certificate.

    ca = TestCa.create(tmp / "ca")
    cert, key = ca.issue_server(tmp / "server")   # for 127.0.0.1 and localhost
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.servers import find_binary

DAYS = "2"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
CA_EXTENSIONS = [
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-addext",
    "subjectKeyIdentifier=hash",
]
SERVER_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""


def openssl(*args: str) -> None:
    """Run one openssl command; its chatter is only shown when it fails."""
    subprocess.run([find_binary("openssl"), *args], check=True, capture_output=True)


@dataclass(frozen=True)
class TestCa:
    """A self-signed CA in ``directory``: ``ca.pem`` (public) and ``ca.key``."""

    __test__ = False  # not a pytest test class, whatever its name says

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path, name: str = "cellmon test CA") -> TestCa:
        """Make a new CA; two calls make two CAs that do not trust each other."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        openssl(
            "req", "-x509", *EC_KEY, "-keyout", str(ca.key), "-out", str(ca.cert),
            "-days", DAYS, "-subj", f"/CN={name}", *CA_EXTENSIONS,
        )  # fmt: skip
        return ca

    def issue_server(self, directory: Path) -> tuple[Path, Path]:
        """A server certificate for 127.0.0.1 and localhost signed by this CA: (cert, key)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "server.pem", directory / "server.key"
        request, extensions = directory / "server.csr", directory / "server.ext"
        extensions.write_text(SERVER_EXTENSIONS)
        openssl(
            "req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(request),
            "-subj", "/CN=localhost",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(extensions),
        )  # fmt: skip
        return cert, key
