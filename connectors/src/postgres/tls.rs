//! `sslmode` for the plain (control) connection, with the libpq meanings: `disable`, `prefer`
//! (TLS when the server offers it, the default), `require` (TLS, the certificate not checked
//! unless `sslrootcert=` names one), `verify-ca` and `verify-full` (TLS, the certificate
//! checked against `sslrootcert=`, and the host name with it). The replication stream goes
//! through libpq, which reads the same URL parameters itself.

use super::CdcError;
use postgres::{Client, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    Verify,
}

/// The URL's `sslmode` and `sslrootcert`, and the URL as the `postgres` crate takes it (which
/// knows only disable, prefer and require, and no root certificate).
fn split(url: &str) -> Result<(String, Mode, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Mode::Prefer, None));
    };
    let (mut mode, mut root, mut kept) = (Mode::Prefer, None, Vec::new());
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "sslmode" => {
                mode = match v {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" | "verify-full" => Mode::Verify,
                    other => {
                        return Err(format!(
                        "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                    ))
                    }
                };
            }
            "sslrootcert" => root = Some(percent_decoded(v)),
            _ => kept.push(kv),
        }
    }
    let pg_mode = match mode {
        Mode::Disable => "disable",
        Mode::Prefer => "prefer",
        Mode::Require | Mode::Verify => "require",
    };
    kept.push(match pg_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok((format!("{base}?{}", kept.join("&")), mode, root))
}

/// A URL parameter's value as libpq reads it: `%XX` escapes decoded (a path with spaces).
fn percent_decoded(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(path: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert={path}: {e}"))?;
    for c in certs {
        let c = c.map_err(|e| format!("sslrootcert={path}: {e}"))?;
        store
            .add(c)
            .map_err(|e| format!("sslrootcert={path}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("sslrootcert={path}: no certificate in the file"));
    }
    Ok(store)
}

fn client_config(mode: Mode, root: Option<&str>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(match (mode, root) {
        (Mode::Verify, None) => {
            return Err("sslmode=verify-ca and verify-full need sslrootcert=FILE (PEM)".into())
        }
        (_, Some(path)) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        (_, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    })
}

/// Connects a plain (non-replication) session with the URL's `sslmode`.
pub(crate) fn connect(url: &str) -> Result<Client, CdcError> {
    let fail = |message: String| CdcError::Connect {
        url: super::redact_url(url),
        message,
    };
    let (pg_url, mode, root) = split(url).map_err(fail)?;
    let res = if mode == Mode::Disable {
        Client::connect(&pg_url, NoTls)
    } else {
        let cfg = client_config(mode, root.as_deref()).map_err(fail)?;
        Client::connect(&pg_url, tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
    };
    res.map_err(|e| fail(super::check::pg_message(&e)))
}

/// `sslmode=require` without a root certificate: encryption, no authentication of the server
/// (libpq's meaning); the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_maps_onto_what_the_postgres_crate_takes() {
        let (u, m, r) = split("postgres://u@h/db").unwrap();
        assert_eq!(
            (u.as_str(), m, r),
            ("postgres://u@h/db", Mode::Prefer, None)
        );
        let (u, m, r) =
            split("postgres://u@h/db?sslmode=verify-full&sslrootcert=/c.pem&application_name=x")
                .unwrap();
        assert_eq!(u, "postgres://u@h/db?application_name=x&sslmode=require");
        assert_eq!((m, r.as_deref()), (Mode::Verify, Some("/c.pem")));
        assert_eq!(
            split("postgres://h/d?sslmode=disable").unwrap().1,
            Mode::Disable
        );
        let (_, _, r) =
            split("postgres://h/d?sslmode=require&sslrootcert=/my%20certs/ca.pem").unwrap();
        assert_eq!(r.as_deref(), Some("/my certs/ca.pem"));
        assert!(split("postgres://h/d?sslmode=bogus")
            .unwrap_err()
            .contains("verify-full"));
        assert!(client_config(Mode::Verify, None)
            .unwrap_err()
            .contains("sslrootcert"));
        assert!(client_config(Mode::Require, Some("/no/such.pem"))
            .unwrap_err()
            .contains("/no/such.pem"));
    }
}
