//! TLS: the rustls server configuration, from PEM files or from a
//! certificate made at start-up, and the sniffing that lets one port answer
//! both plain HTTP and TLS.
//!
//! With `--tls`, the listening port serves `http://`, `https://`, `ws://`
//! and `wss://`: a connection whose first byte is 22 (a TLS handshake
//! record, which no HTTP request line starts with) is a TLS connection. ALPN
//! offers `h2` and `http/1.1`. Without `--tls-cert`/`--tls-key`, a CA and a
//! leaf certificate for `localhost`, `127.0.0.1` and `::1` are made with
//! rcgen, and the CA is written to `--tls-ca-out` (or a file in the temporary
//! directory named after the process), where clients can trust it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first byte of a TLS record that carries a handshake message.
pub const HANDSHAKE_RECORD: u8 = 22;

/// The ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A ready TLS configuration, and where its CA was written when the server
/// made its own certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls configuration every TLS connection uses.
    pub config: Arc<rustls::ServerConfig>,
    /// The generated CA's PEM file; None with `--tls-cert`.
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 of the generated leaf certificate (DER), which a
    /// browser's WebTransport takes as `serverCertificateHashes` instead of
    /// a chain to a trusted root; None with `--tls-cert`, whose validity
    /// the server does not check against that option's rules.
    pub leaf_sha256: Option<[u8; 32]>,
}

/// The process-wide crypto provider: *ring*, which builds with no C
/// toolchain beyond what `cc` needs.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a certificate chain and its key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // No TLS 1.3 session tickets: no client here resumes a session. With
    // them, a trial run's handshake bytes read 999 per connection over
    // HTTP/1.1 and 644 over HTTP/2; without them about 1,000 and 989, so
    // the stacks agree. (Why HTTP/2's read low was not pinned down.)
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Reads a certificate chain and a private key from PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    Ok(Tls {
        config: server_config(chain, key)?,
        ca_file: None,
        leaf_sha256: None,
    })
}

/// A generated CA and the leaf certificate it signed.
#[derive(Debug)]
pub struct Generated {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// The leaf certificate, DER.
    pub leaf: CertificateDer<'static>,
    /// The leaf's private key, DER (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The leaf certificate, PEM (for a reverse proxy's files).
    pub leaf_pem: String,
    /// The leaf's private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// How long a generated leaf certificate is valid: 13 days from an hour
/// ago. A browser's WebTransport accepts a certificate by its hash
/// (`serverCertificateHashes`) only when it is ECDSA and valid for at most
/// 14 days (W3C WebTransport, "custom certificate requirements").
pub const LEAF_VALIDITY: std::time::Duration = std::time::Duration::from_secs(13 * 86_400);

/// Makes a CA ("chatbench test CA") and a leaf certificate for
/// `localhost`, `127.0.0.1`, `::1` and `extra` names, ECDSA P-256, the
/// leaf valid for [`LEAF_VALIDITY`].
pub fn generate(extra: &[String]) -> Result<Generated, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| format!("cannot make a TLS certificate: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.distinguished_name
        .push(DnType::CommonName, "chatbench test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(extra.iter().cloned());
    let mut leaf = CertificateParams::new(names).map_err(fail)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "chatbench-server");
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + LEAF_VALIDITY;
    let leaf_key = KeyPair::generate().map_err(fail)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(fail)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        leaf: leaf_cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        leaf_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// Generates a certificate ([`generate`]) and writes its CA to `ca_out`, or
/// to `chatbench-ca-<pid>.pem` in the temporary directory.
pub fn self_signed(ca_out: Option<&Path>, extra: &[String]) -> Result<Tls, String> {
    let g = generate(extra)?;
    let path = ca_out.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("chatbench-ca-{}.pem", std::process::id()))
    });
    std::fs::write(&path, &g.ca_pem)
        .map_err(|e| format!("cannot write the CA to {}: {e}", path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &g.leaf);
    let mut leaf_sha256 = [0u8; 32];
    leaf_sha256.copy_from_slice(digest.as_ref());
    Ok(Tls {
        config: server_config(vec![g.leaf], g.key)?,
        ca_file: Some(path),
        leaf_sha256: Some(leaf_sha256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_leaf_verifies_against_its_ca_for_every_name() {
        use rustls::client::danger::ServerCertVerifier;
        let g = generate(&["chat.test".into()]).unwrap();
        let ca = CertificateDer::from_pem_slice(g.ca_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1", "::1", "chat.test"] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&g.leaf, &[], &name, &[], now)
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("example.com").unwrap();
        assert!(verifier
            .verify_server_cert(&g.leaf, &[], &other, &[], now)
            .is_err());
    }

    /// WebTransport's `serverCertificateHashes` takes a leaf valid at most
    /// 14 days: the generated one verifies 12 days on and not 14 days on.
    #[test]
    fn a_generated_leaf_is_valid_under_fourteen_days() {
        use rustls::client::danger::ServerCertVerifier;
        let g = generate(&[]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(g.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let at = |t: std::time::SystemTime| {
            rustls::pki_types::UnixTime::since_unix_epoch(
                t.duration_since(std::time::UNIX_EPOCH).unwrap(),
            )
        };
        let now = std::time::SystemTime::now();
        assert!(verifier
            .verify_server_cert(&g.leaf, &[], &name, &[], at(now + 12 * day))
            .is_ok());
        let late = verifier
            .verify_server_cert(&g.leaf, &[], &name, &[], at(now + 14 * day))
            .unwrap_err();
        assert!(format!("{late}").contains("expired"), "{late}");
        assert!(verifier
            .verify_server_cert(
                &g.leaf,
                &[],
                &name,
                &[],
                at(now - 2 * std::time::Duration::from_secs(3600))
            )
            .is_err());
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("chatbench-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let e = from_files(&cert, &key).unwrap_err();
        assert_eq!(
            e,
            format!("--tls-cert {}: no certificate in the file", cert.display())
        );
        let g = generate(&[]).unwrap();
        std::fs::write(&cert, g.ca_pem.as_bytes()).unwrap();
        let e = from_files(&cert, &key).unwrap_err();
        assert!(
            e.starts_with(&format!("--tls-key {}: ", key.display())),
            "{e}"
        );
        let e = from_files(&dir.join("missing.pem"), &key).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
