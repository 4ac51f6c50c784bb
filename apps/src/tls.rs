//! HTTPS: a certificate chain and its private key, read from PEM files, for rustls.
//!
//! rustls rather than OpenSSL: no system library to match, memory-safe, and already in the build
//! (the HTTP client uses it). ALPN offers HTTP/2 and HTTP/1.1; the connection loop serves both.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// The server's TLS settings from `cert` (the chain, leaf first) and `key` (PKCS#8, PKCS#1 or
/// SEC1), both PEM.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a private key from {}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use std::io::Write;

    use super::server_config;

    fn pem_files(cert: &str, key: &str) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        let mut cert_file = tempfile::NamedTempFile::new().expect("a temp file");
        cert_file.write_all(cert.as_bytes()).expect("written");
        let mut key_file = tempfile::NamedTempFile::new().expect("a temp file");
        key_file.write_all(key.as_bytes()).expect("written");
        (cert_file, key_file)
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a cert");
        let (cert, key) = pem_files(&made.cert.pem(), &made.signing_key.serialize_pem());
        let config = server_config(cert.path(), key.path()).expect("loads");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_files_get_an_error_that_names_them() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a cert");
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a cert");
        let (cert, key) = pem_files(&made.cert.pem(), &other.signing_key.serialize_pem());
        let error = server_config(cert.path(), key.path()).expect_err("mismatched");
        assert!(error.to_string().contains("do not go together"), "{error:#}");

        let (empty, key) = pem_files("not a certificate\n", &made.signing_key.serialize_pem());
        let error = server_config(empty.path(), key.path()).expect_err("no certificate");
        assert!(format!("{error:#}").contains(&empty.path().display().to_string()), "{error:#}");

        let missing = std::path::Path::new("/nonexistent/cert.pem");
        let error = server_config(missing, key.path()).expect_err("missing");
        assert!(format!("{error:#}").contains("/nonexistent/cert.pem"), "{error:#}");
    }
}
