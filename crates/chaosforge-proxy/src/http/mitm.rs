//! `tls-mitm`: the certificates the proxy presents to its clients. At start the proxy makes
//! its own CA (never trusted by anyone) and one leaf certificate per defect, with rcgen on
//! aws-lc-rs, so that a `tls-mitm` fault set later only picks one (setting it cannot fail);
//! each rustls server config offers `h2` and `http/1.1` by ALPN.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::HttpProxyError;

/// The certificate a `tls-mitm` proxy presents to its clients. Each has exactly one defect,
/// so a client that validates certificates fails for that reason alone; one that completes
/// the handshake accepted the defect (a security finding).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum MitmCert {
    /// Valid dates and host names, issued by the proxy's own CA, which nobody trusts
    /// (a validating client sees an unknown issuer).
    Untrusted,
    /// Issued by the proxy's CA for the right names, but expired yesterday.
    Expired,
    /// Issued by the proxy's CA for the right names, valid only from the day after tomorrow.
    NotYetValid,
    /// Issued by the proxy's CA with valid dates, for `wrong-host.chaosforge.invalid` only.
    /// A client that trusts the proxy's CA still fails on the name; one that trusts only the
    /// real upstream's CA fails on the issuer first.
    WrongHost,
}

/// The TLS side of the proxy: its CA and one server config per [`MitmCert`].
#[derive(Debug)]
pub(crate) struct MitmTls {
    /// The proxy's own CA certificate (for tests that want a client trusting it).
    pub(crate) ca: CertificateDer<'static>,
    /// Per variant, in [`MitmCert::ALL`] order: presents that defective leaf; ALPN `h2`,
    /// `http/1.1`.
    configs: [Arc<ServerConfig>; 4],
}

/// The name on a [`MitmCert::WrongHost`] certificate; `.invalid` never resolves (RFC 6761).
const WRONG_HOST: &str = "wrong-host.chaosforge.invalid";

// === impl MitmCert ===

impl MitmCert {
    /// Every variant, in declaration order.
    pub const ALL: [MitmCert; 4] = [
        MitmCert::Untrusted,
        MitmCert::Expired,
        MitmCert::NotYetValid,
        MitmCert::WrongHost,
    ];

    /// The certificate as a finding names it: "client accepted {this}".
    pub fn describe(self) -> &'static str {
        match self {
            MitmCert::Untrusted => "a certificate from an untrusted CA",
            MitmCert::Expired => "an expired certificate",
            MitmCert::NotYetValid => "a certificate that is not valid yet",
            MitmCert::WrongHost => "a certificate for the wrong host name",
        }
    }

    /// The experiment file's name for it: `untrusted`, `expired`, `not-yet-valid`,
    /// `wrong-host`.
    pub fn name(self) -> &'static str {
        match self {
            MitmCert::Untrusted => "untrusted",
            MitmCert::Expired => "expired",
            MitmCert::NotYetValid => "not-yet-valid",
            MitmCert::WrongHost => "wrong-host",
        }
    }
}

// === impl MitmTls ===

impl MitmTls {
    /// A new CA and one leaf per variant for `names` (DNS names or IP addresses the clients
    /// use: the proxy's and the upstream's). Costs five ECDSA P-256 key pairs, a few
    /// milliseconds.
    pub(crate) fn new(names: &[String]) -> Result<MitmTls, HttpProxyError> {
        let today = days_since_epoch();
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "chaosforge MITM CA (untrusted)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // The CA itself is always within its dates, so the leaf's defect is the only one.
        valid(&mut ca_params, today - 60, today + 365);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let [a, b, c, d] = MitmCert::ALL;
        Ok(MitmTls {
            ca: ca.der().clone(),
            configs: [
                leaf_config(a, names, &issuer, today)?,
                leaf_config(b, names, &issuer, today)?,
                leaf_config(c, names, &issuer, today)?,
                leaf_config(d, names, &issuer, today)?,
            ],
        })
    }

    /// The server config presenting `variant`'s certificate.
    pub(crate) fn config(&self, variant: MitmCert) -> Arc<ServerConfig> {
        let at = MitmCert::ALL
            .iter()
            .position(|v| *v == variant)
            .unwrap_or_default();
        self.configs[at].clone()
    }
}

/// A server config presenting a leaf with `variant`'s defect, signed by `issuer`.
fn leaf_config(
    variant: MitmCert,
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
    today: i64,
) -> Result<Arc<ServerConfig>, HttpProxyError> {
    let leaf_names = match variant {
        MitmCert::WrongHost => vec![WRONG_HOST.to_owned()],
        _ => names.to_vec(),
    };
    let mut leaf = CertificateParams::new(leaf_names.clone())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        leaf_names.first().map_or(WRONG_HOST, String::as_str),
    );
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let (from, until) = match variant {
        MitmCert::Expired => (today - 30, today - 1),
        MitmCert::NotYetValid => (today + 2, today + 30),
        MitmCert::Untrusted | MitmCert::WrongHost => (today - 1, today + 30),
    };
    valid(&mut leaf, from, until);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, issuer)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sets `params` valid from midnight UTC of day `from` to midnight of day `until` (day
/// numbers). Day granularity is enough: every validity bound is at least a day away from now.
/// (This way rcgen's `time` type needs no name.)
fn valid(params: &mut CertificateParams, from: i64, until: i64) {
    let date = |days: i64| {
        let (y, m, d) = civil_from_days(days);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = date(from);
    params.not_after = date(until);
}

/// Whole days since 1970-01-01 (UTC), today. A clock before 1970 counts as day 0.
fn days_since_epoch() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// The proleptic Gregorian date of a day number (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // In range for any clock this century and the next: y fits i32, m in 1..=12, d in 1..=31.
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn every_variant_builds_under_one_ca() {
        let tls = MitmTls::new(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(!tls.ca.is_empty());
        for variant in MitmCert::ALL {
            assert_eq!(tls.config(variant).alpn_protocols.len(), 2);
        }
        assert!(!Arc::ptr_eq(
            &tls.config(MitmCert::Expired),
            &tls.config(MitmCert::WrongHost)
        ));
    }
}
