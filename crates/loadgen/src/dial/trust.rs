//! Whom clients trust: a rustls client configuration from the server's CA
//! certificates, for TLS over TCP ([`super::tls`]) and for QUIC
//! ([`super::quic`]).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::io;
use std::sync::Arc;

/// A rustls client configuration that trusts exactly `ca_pems` and offers
/// `alpn` (TCP's connectors and QUIC's).
pub fn client_config(ca_pems: &[String], alpn: &[&[u8]]) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| io::Error::other(format!("a CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| io::Error::other(format!("a CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(io::Error::other(
            "TLS needs the server's CA certificate, and none was given",
        ));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No session resumption. Every client of a run shares this
    // configuration, and rustls keeps its tickets in the configuration: with
    // the default cache, a client would resume a session another client
    // made, which no two browsers do. Through nginx, whose tickets are on by
    // default, a short-poll run's handshakes read 625 bytes per connection
    // with the shared cache (most of them resumed, no certificate) against
    // chatbench's own 989 for full handshakes.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
