"""A test CA, the registry's server certificate and the token issuer's signing key, made with
`cryptography` once per test session.

EC P-256 keys throughout: they are made in microseconds (an RSA key takes a noticeable part of
a second), and Go's TLS stack, OpenSSL and distribution's token verifier all accept them.
The extensions are the ones a strict verifier (Go's x509, Python's VERIFY_X509_STRICT) wants:
a critical basicConstraints and keyUsage on the CA, SAN + serverAuth on the leaf, and the
subject/authority key identifiers that chain building uses.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Backdated an hour so that a clock a little behind the issuing one still accepts them.
_SKEW = datetime.timedelta(hours=1)
_LIFETIME = datetime.timedelta(days=2)


@dataclass(frozen=True)
class KeyPair:
    """A private key and the certificate for its public key, both written as PEM files."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "builder tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(
    pair_dir: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> KeyPair:
    key_path = pair_dir / f"{stem}.key"
    cert_path = pair_dir / f"{stem}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key, cert, key_path, cert_path)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(directory: Path) -> KeyPair:
    """A self-signed CA that may sign server certificates (and nothing under them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("builder test CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", key, cert)


def make_leaf(
    ca: KeyPair,
    directory: Path,
    stem: str,
    *,
    ips: tuple[str, ...] = ("127.0.0.1",),
    dns: tuple[str, ...] = ("localhost",),
) -> KeyPair:
    """A certificate signed by `ca` for a TLS server at the given addresses.

    The token issuer's signing key is one of these too: distribution only reads the public key
    out of its rootcertbundle, so any valid certificate for the key will do.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(host) for host in dns]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(_name(stem), ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return _write(directory, stem, key, cert)
