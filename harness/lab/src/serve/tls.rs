//! TLS for the lab: a self-signed certificate made at start (rcgen) and a rustls server
//! configuration shared by every TLS listener and every STARTTLS/STLS upgrade.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("could not make a self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("reading the trusted certificates in {path}: {source}")]
    TrustedCertificates {
        path: std::path::PathBuf,
        source: rustls::pki_types::pem::Error,
    },
}

/// The lab's certificate and the acceptor that serves it.
#[derive(Clone)]
pub struct LabTls {
    pub acceptor: TlsAcceptor,
    /// The certificate in PEM, for clients that want to trust it (`curl --cacert`).
    pub certificate_pem: String,
    pub certificate_der: CertificateDer<'static>,
}

impl std::fmt::Debug for LabTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabTls").finish_non_exhaustive()
    }
}

impl LabTls {
    /// A fresh self-signed certificate for `hostname`, `localhost` and the loopback
    /// addresses.
    pub fn self_signed(hostname: &str) -> Result<LabTls, TlsSetupError> {
        let names = vec![
            hostname.to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)?;
        let certificate_pem = certified.cert.pem();
        let certificate_der = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate_der.clone()], key)?;
        Ok(LabTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate_pem,
            certificate_der,
        })
    }
}

/// A client configuration that verifies servers the ordinary way (webpki: chain, names,
/// validity) against `trusted` as the only roots: the lab's self-signed certificate, or
/// the PEM file of another lab's (`harness serve --cert-out`). With `resumption` off,
/// every connection makes a full handshake; on, rustls resumes from its in-memory cache
/// (TLS 1.3 tickets, RFC 8446 2.2), as clients do by default.
pub fn verifying_client_config(
    trusted: &[CertificateDer<'static>],
    resumption: bool,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in trusted {
        roots.add(certificate.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The certificates of a PEM file.
pub fn read_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let err = |source| TlsSetupError::TrustedCertificates {
        path: path.to_path_buf(),
        source,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)
}

/// A client configuration that trusts exactly one certificate (the lab's), checking that
/// the server presents it and that the handshake signatures verify. Used by the driver's
/// socket runner and the tests to talk TLS to the lab without a CA.
pub fn pinned_client_config(
    certificate: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier {
        certificate,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCertVerifier {
    certificate: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
