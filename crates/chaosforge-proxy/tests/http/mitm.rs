//! `tls-mitm`: a client that validates certificates refuses every bad certificate, for the
//! certificate's own defect; a client that does not validate gets through, and the proxy
//! records that it accepted the certificate (a security finding).

use std::time::Duration;

use chaosforge_proxy::http::{Finding, HttpProxy, MitmCert};
use hyper::Version;
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;

use crate::support::*;

/// What a validating client should say about a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    UnknownIssuer,
    Expired,
    NotValidYet,
    WrongName,
}

fn https_url(proxy: &HttpProxy) -> String {
    // By IP: the certificates name 127.0.0.1, and no resolver is involved.
    format!("https://{}/mitm", proxy.local_addr())
}

pub fn trusting(ca: &CertificateDer<'static>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_der(ca).unwrap()])
        .build()
        .unwrap()
}

/// The certificate problem in a reqwest error's chain. rustls' error sits inside nested
/// `io::Error`s, whose `source()` skips the wrapped error, hence the `get_ref` walk.
pub fn defect(error: &reqwest::Error) -> Option<Defect> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let mut inner = e;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        let tls = inner.downcast_ref::<rustls::Error>();
        if let Some(rustls::Error::InvalidCertificate(cert)) = tls {
            return match cert {
                CertificateError::UnknownIssuer => Some(Defect::UnknownIssuer),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Some(Defect::Expired)
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Some(Defect::NotValidYet)
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Some(Defect::WrongName),
                other => panic!("unexpected certificate error {other:?}"),
            };
        }
        next = e.source();
    }
    None
}

async fn expect_refused(client: &reqwest::Client, proxy: &HttpProxy, want: Defect) {
    let error = within(Duration::from_secs(10), client.get(https_url(proxy)).send())
        .await
        .expect_err("a validating client must refuse the certificate");
    assert_eq!(defect(&error), Some(want), "{error:?}");
}

#[tokio::test]
async fn validating_clients_refuse_each_variant_and_careless_ones_are_recorded() {
    let upstream = tls_upstream(Behaviour::Echo).await;
    let upstream_ca = upstream.ca.clone().unwrap();
    let careless = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();

    for variant in MitmCert::ALL {
        let proxy = proxy_with(&upstream, Some(variant)).await;

        // A client that trusts only the real upstream's CA: the proxy's CA is unknown to it.
        // Date checks come before the issuer in path building, so an expired or not yet
        // valid certificate is reported as such.
        let only_upstream = trusting(&upstream_ca);
        let first_defect = match variant {
            MitmCert::Untrusted | MitmCert::WrongHost => Defect::UnknownIssuer,
            MitmCert::Expired => Defect::Expired,
            MitmCert::NotYetValid => Defect::NotValidYet,
        };
        expect_refused(&only_upstream, &proxy, first_defect).await;

        // A client that trusts the proxy's CA isolates the variant's own defect: only the
        // `untrusted` certificate (whose one defect is its issuer) then passes.
        let proxy_ca = proxy.mitm_ca().clone();
        let trusts_proxy = trusting(&proxy_ca);
        let own_defect = match variant {
            MitmCert::Untrusted => None,
            MitmCert::Expired => Some(Defect::Expired),
            MitmCert::NotYetValid => Some(Defect::NotValidYet),
            MitmCert::WrongHost => Some(Defect::WrongName),
        };
        let mut accepted = 0;
        match own_defect {
            Some(defect) => expect_refused(&trusts_proxy, &proxy, defect).await,
            None => {
                let response = within(
                    Duration::from_secs(10),
                    trusts_proxy.get(https_url(&proxy)).send(),
                )
                .await
                .unwrap();
                assert_eq!(response.status(), 200);
                accepted += 1;
            }
        }

        // A client that does not validate gets through, over h2 (ALPN), to the real upstream.
        let response = within(
            Duration::from_secs(10),
            careless.get(https_url(&proxy)).send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), Version::HTTP_2);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/mitm");
        accepted += 1;

        // The proxy records a refusal when the client's alert arrives, which can trail the
        // client's own error by a moment.
        eventually(Duration::from_secs(5), || {
            let tls = proxy.stats().tls;
            tls.get(&variant)
                .is_some_and(|tls| tls.accepted + tls.rejected == 3)
        })
        .await;
        let stats = proxy.stats();
        // Only this variant was presented.
        assert_eq!(stats.tls.len(), 1, "{:?}", stats.tls);
        let tls = stats.tls[&variant].clone();
        assert_eq!(tls.variant, variant);
        assert_eq!(tls.accepted, accepted, "{variant:?}: {tls:?}");
        assert_eq!(tls.rejected, 3 - accepted, "{variant:?}: {tls:?}");
        let findings = stats.findings();
        assert_eq!(
            findings,
            [Finding::ClientAcceptedCertificate {
                variant,
                handshakes: accepted
            }]
        );
        println!(
            "{variant:?}: {}; rejections {:?}",
            findings[0], tls.rejections
        );
        proxy.shutdown().await;
    }
}
