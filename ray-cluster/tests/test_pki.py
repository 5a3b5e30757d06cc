"""The job's identities: one CA per job, the aggregator's server name, a worker's index in its CN,
files only the owner can read, and no key in a repr."""

import os
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tensorguard_ray._internal.pki import AGGREGATOR_NAME, KEY_HOLDER_NAME, JobPki, remove_identity_dir


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _verify(ca: x509.Certificate, cert: x509.Certificate) -> None:
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                           ec.ECDSA(cert.signature_hash_algorithm))


def test_worker_and_aggregator_certificates_are_signed_by_the_jobs_ca():
    pki = JobPki("job-1")
    agg = pki.aggregator()
    w = pki.worker(3)
    ca = x509.load_pem_x509_certificate(agg.ca_pem)
    agg_cert = x509.load_pem_x509_certificate(agg.cert_pem)
    w_cert = x509.load_pem_x509_certificate(w.cert_pem)
    _verify(ca, agg_cert)
    _verify(ca, w_cert)
    assert _cn(agg_cert) == AGGREGATOR_NAME
    san = agg_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [AGGREGATOR_NAME]
    assert _cn(w_cert) == "worker-3"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not w_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_another_jobs_ca_did_not_sign_this_jobs_certificates():
    a, b = JobPki("job-a"), JobPki("job-b")
    ca_b = x509.load_pem_x509_certificate(b.ca_pem)
    w = x509.load_pem_x509_certificate(a.worker(0).cert_pem)
    try:
        _verify(ca_b, w)
    except Exception:  # noqa: BLE001 - InvalidSignature
        return
    raise AssertionError("job-b's CA verified job-a's certificate")


def test_identity_files_are_private_and_removed():
    ident = JobPki("job-2").worker(0)
    d = ident.write()
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        for f in ("ca.pem", "cert.pem", "key.pem"):
            assert stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode) == 0o600
        with open(os.path.join(d, "key.pem"), "rb") as f:
            assert f.read() == ident.key_pem
    finally:
        remove_identity_dir(d)
    assert not os.path.exists(d)
    assert "PRIVATE" not in repr(ident) and "redacted" in repr(ident)


def test_the_he_key_holder_has_its_own_certificate_for_tls_and_ecdh():
    pki = JobPki("job-kh")
    kh = pki.key_holder()
    ca = x509.load_pem_x509_certificate(kh.ca_pem)
    cert = x509.load_pem_x509_certificate(kh.cert_pem)
    _verify(ca, cert)
    assert _cn(cert) == KEY_HOLDER_NAME
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [KEY_HOLDER_NAME]
    # P-256, so that workers can derive their pad keys with it (ECDH, secure-agg's he-pad.ts).
    assert cert.public_key().curve.name == "secp256r1"
    assert _cn(x509.load_pem_x509_certificate(pki.aggregator().cert_pem)) != KEY_HOLDER_NAME
