"""Per-job identities for the training links: one certificate authority per job, one certificate
per role and worker index, made with the maintained ``cryptography`` package (a dependency of
``ray[default]``).

Who holds what:
- The job entrypoint (the driver's agent on the cluster) creates the CA in memory when the job
  starts and issues every certificate. The CA key never leaves that process and is never written.
- Each supervisor actor receives only its own key and certificate plus the CA certificate, as an
  actor argument (Ray's object store, not the job's metadata, environment or the dashboard), and
  writes them for its Node child into a fresh 0700 directory, files 0600, removed when the actor
  stops. The aggregator never holds a worker's key, nor a worker another worker's.
- The aggregator's certificate names ``tensorguard-aggregator`` (DNS SAN): workers verify that name
  whatever address the aggregator listens on (``grpc.ssl_target_name_override``), so the Ray node's
  IP needs no SAN. A worker's certificate has CN ``worker-<index>``: the aggregator takes a worker's
  index from it, never from a message.
- The HE key holder's certificate names ``tensorguard-key-holder`` (CN and DNS SAN). It serves
  mutual TLS to the aggregator with it, signs each round's nonce with it (workers check the
  signature against the job's CA before encrypting), and derives each worker's pads by ECDH with
  the worker's certificate key; all keys are P-256. It is issued only for HE jobs that start their
  key holder under the coordinator (secure-agg's docs/secure-aggregation.md, HE mode).

A certificate of another job is signed by another CA and is refused by the TLS handshake itself.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AGGREGATOR_NAME = "tensorguard-aggregator"
KEY_HOLDER_NAME = "tensorguard-key-holder"

# Long enough for any job; a job's CA is thrown away with the job.
_VALIDITY = dt.timedelta(days=30)


def worker_name(index: int) -> str:
    return f"worker-{index}"


@dataclass(frozen=True)
class Identity:
    """One party's credentials, PEM-encoded: what a supervisor hands its Node child."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never print a key (Ray logs actor arguments on some errors)
        return "Identity(<redacted>)"

    def write(self, parent: Optional[str] = None) -> str:
        """Writes ca.pem, cert.pem and key.pem into a new 0700 directory (under ``parent``, else
        the system temp folder); returns its path. Remove it with :func:`remove_identity_dir`."""
        d = tempfile.mkdtemp(prefix="tg-tls-", dir=parent)  # mkdtemp makes it 0700
        for name, data in (("ca.pem", self.ca_pem), ("cert.pem", self.cert_pem),
                           ("key.pem", self.key_pem)):
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return d


def remove_identity_dir(path: Optional[str]) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class JobPki:
    """The CA of one job. Lifecycle: created by the entrypoint, issues identities, then dropped."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TensorGuard"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"tensorguard job {job_id} CA"),
        ])
        self._name = name
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def _issue(self, common_name: str, dns: list[str], server: bool) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"tensorguard job {self.job_id}"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if dns:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return Identity(
            ca_pem=self.ca_pem,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def aggregator(self) -> Identity:
        """The aggregator's server (and key-holder client) identity."""
        return self._issue(AGGREGATOR_NAME, [AGGREGATOR_NAME], server=True)

    def key_holder(self) -> Identity:
        """The HE key holder's server identity: CN and DNS SAN ``tensorguard-key-holder``."""
        return self._issue(KEY_HOLDER_NAME, [KEY_HOLDER_NAME], server=True)

    def worker(self, index: int) -> Identity:
        """Worker ``index``'s client identity: CN ``worker-<index>``."""
        if not (isinstance(index, int) and index >= 0):
            raise ValueError(f"worker index must be an integer ≥ 0, got {index!r}")
        return self._issue(worker_name(index), [], server=False)
