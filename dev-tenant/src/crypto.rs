//! Keys and certificates: the local CA and server certificate for HTTPS, and the RSA keys
//! that sign tokens and are published as JWKS.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::Digest;
use time::OffsetDateTime;

pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const SIGNING_KEYS_FILE: &str = "signing-keys.json";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "b2b-invites dev tenant CA");
    dn.push(DnType::OrganizationName, "b2b-invites");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed validity so the CA rebuilt from a saved key matches the ca.pem clients trust.
    params.not_before = time::macros::datetime!(2024-01-01 00:00 UTC);
    params.not_after = time::macros::datetime!(2049-12-31 00:00 UTC);
    params
}

/// The HTTPS identity: the CA (persisted) and a fresh server certificate it signed.
pub struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
}

pub fn load_or_create_tls(state_dir: &Path, ip: IpAddr) -> anyhow::Result<Tls> {
    let ca_path = state_dir.join(CA_FILE);
    let key_path = state_dir.join(CA_KEY_FILE);
    let (ca_key, ca_cert) = if ca_path.exists() && key_path.exists() {
        let pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&pem).context("parsing the dev tenant CA key")?;
        // Re-signing the same name and key yields a certificate equivalent, for path
        // building, to the ca.pem clients already trust; ca.pem itself is left untouched.
        let cert = ca_params().self_signed(&key)?;
        (key, cert)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        std::fs::write(&ca_path, cert.pem())
            .with_context(|| format!("writing {}", ca_path.display()))?;
        (key, cert)
    };

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    params
        .subject_alt_names
        .push(SanType::IpAddress("::1".parse()?));
    if !ip.is_unspecified() && !ip.is_loopback() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )?;
    // HTTP/1.1 only: one request per connection at a time keeps "drop the connection"
    // faults aimed at exactly one request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server_config: Arc::new(config),
    })
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Reads one DER TLV; returns (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if input.len() < end {
        return None;
    }
    Some((tag, &input[hdr..end], &input[end..]))
}

/// Modulus and exponent (big-endian, no leading zero) of an RSA SubjectPublicKeyInfo.
pub fn rsa_components(spki_der: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let bad = || anyhow!("not an RSA public key");
    let (_, spki, _) = der_tlv(spki_der).ok_or_else(bad)?;
    let (_, _alg, rest) = der_tlv(spki).ok_or_else(bad)?;
    let (tag, bits, _) = der_tlv(rest).ok_or_else(bad)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        bail!("not an RSA public key");
    }
    let (_, rsa, _) = der_tlv(&bits[1..]).ok_or_else(bad)?;
    let (_, n, rest) = der_tlv(rsa).ok_or_else(bad)?;
    let (_, e, _) = der_tlv(rest).ok_or_else(bad)?;
    let strip = |v: &[u8]| {
        let i = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        v[i..].to_vec()
    };
    Ok((strip(n), strip(e)))
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn x5t_sha1(der: &[u8]) -> String {
    b64url(&Sha1::digest(der))
}

/// Thumbprints arrive base64url (the spec) or standard base64 (some SDKs), padded or not.
pub fn decode_thumbprint(value: &str) -> Option<Vec<u8>> {
    let trimmed = value.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| STANDARD.decode(value).ok())
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .ok()
        })
}

/// A token-signing key, published in the JWKS while it is in the list.
pub struct SigningKey {
    pub kid: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    key_pem: String,
    cert_pem: String,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<SigningKey> {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "accounts.b2b-invites.dev");
        params.distinguished_name = dn;
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(5 * 365);
        let cert = params.self_signed(&key)?;
        Self::from_parts(key.serialize_pem(), cert.der().to_vec())
    }

    fn from_parts(key_pem: String, cert_der: Vec<u8>) -> anyhow::Result<SigningKey> {
        let key = KeyPair::from_pem(&key_pem)?;
        let (n, e) = rsa_components(&key.public_key_der())?;
        Ok(SigningKey {
            // Entra uses the certificate's SHA-1 thumbprint as the key id.
            kid: x5t_sha1(&cert_der),
            encoding: EncodingKey::from_rsa_pem(key_pem.as_bytes())?,
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            key_pem,
            cert_der,
            n,
            e,
        })
    }

    pub fn jwk(&self, issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(&self.n),
            "e": b64url(&self.e),
            "x5c": [STANDARD.encode(&self.cert_der)],
            "issuer": issuer,
        })
    }
}

pub fn load_signing_keys(state_dir: &Path) -> anyhow::Result<Option<Vec<SigningKey>>> {
    let path = state_dir.join(SIGNING_KEYS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let stored: Vec<StoredKey> = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let keys = stored
        .into_iter()
        .map(|k| {
            let der = pem_cert_der(&k.cert_pem)?;
            SigningKey::from_parts(k.key_pem, der)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(keys))
}

pub fn save_signing_keys(state_dir: &Path, keys: &[SigningKey]) -> anyhow::Result<()> {
    let stored: Vec<StoredKey> = keys
        .iter()
        .map(|k| StoredKey {
            key_pem: k.key_pem.clone(),
            cert_pem: der_to_pem("CERTIFICATE", &k.cert_der),
        })
        .collect();
    write_private(
        &state_dir.join(SIGNING_KEYS_FILE),
        &serde_json::to_string_pretty(&stored)?,
    )
}

pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first certificate in a PEM text.
pub fn pem_cert_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let mut reader = pem.as_bytes();
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .ok_or_else(|| anyhow!("no CERTIFICATE block in the PEM"))??;
    Ok(cert.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_components_match_the_key() {
        let key = SigningKey::generate().unwrap();
        assert_eq!(key.e, vec![1, 0, 1]);
        assert_eq!(key.n.len(), 256);
    }

    #[test]
    fn thumbprints_decode_in_any_base64() {
        let raw = Sha1::digest(b"x").to_vec();
        assert_eq!(decode_thumbprint(&b64url(&raw)).unwrap(), raw);
        assert_eq!(decode_thumbprint(&STANDARD.encode(&raw)).unwrap(), raw);
    }
}
