//! TLS client configurations (rustls, ring) for the servers we connect to (homeservers,
//! directories, databases): trusting an internal CA (`caFile`) or the system's CAs, or, for
//! PostgreSQL's `require` mode, encrypting without checking the certificate (libpq's
//! meaning).
//!
//! A certificate in `caFile` is also accepted as the server's own when the server presents
//! exactly it (byte for byte): operators often make a self-signed certificate with `openssl
//! req -x509`, which marks it `CA:TRUE`, and put that one file in `caFile`; the normal check
//! refuses such a certificate as a server's (`CaUsedAsEndEntity`). The handshake signature
//! is checked as always, so only the holder of its key passes.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;

/// Debian's bundle of the system's CAs (package ca-certificates).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts the CAs of `ca_file` (PEM), or the system's when `None`, and checks
/// the server's name. `key` is the config key named in errors.
pub fn verifying(ca_file: Option<&Path>, key: &str) -> Result<ClientConfig, String> {
    checking(ca_file, key, true)
}

/// As [`verifying`], the name not checked (PostgreSQL's `verify-ca`).
pub fn verifying_ca_only(ca_file: Option<&Path>, key: &str) -> Result<ClientConfig, String> {
    checking(ca_file, key, false)
}

fn checking(ca_file: Option<&Path>, key: &str, check_name: bool) -> Result<ClientConfig, String> {
    let file = ca_file.unwrap_or(Path::new(SYSTEM_CAS));
    let failed = |e: &dyn std::fmt::Display| format!("{key} {}: {e}", file.display());
    let certs = match CertificateDer::pem_file_iter(file) {
        Ok(certs) => certs
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(&e))?,
        // Without a bundle of its own, a machine simply trusts no CA.
        Err(_) if ca_file.is_none() => Vec::new(),
        Err(e) => return Err(failed(&e)),
    };
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| failed(&e))?;
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if roots.is_empty() {
        // Nothing to pin, nothing to trust: every certificate is refused.
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| failed(&e))?;
    // Only the certificates of the operator's own file are pinned, never the system's.
    let pinned = if ca_file.is_some() { certs } else { Vec::new() };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrVerified {
            webpki,
            pinned,
            check_name,
        }))
        .with_no_client_auth())
}

/// The server's certificate is one of `pinned`, byte for byte, or passes webpki's checks
/// (the name too when `check_name`); the handshake signature is always webpki's check.
#[derive(Debug)]
struct PinnedOrVerified {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for PinnedOrVerified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A client that encrypts and checks the server's handshake signature, but accepts any
/// certificate: protects against eavesdropping, not against an active attacker.
pub fn unverified() -> Result<ClientConfig, String> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
