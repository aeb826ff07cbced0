//! The names a verified client certificate can stand for: its DNS, URI and
//! e-mail subject alternative names, then its subject common names, in that
//! order. rustls has already checked the chain against the client CA; this
//! only reads names out of the certificate it accepted.

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(name) | GeneralName::URI(name) | GeneralName::RFC822Name(name) => {
                    names.push((*name).to_owned())
                }
                _ => {}
            }
        }
    }
    names.extend(certificate.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_owned));
    names
}
