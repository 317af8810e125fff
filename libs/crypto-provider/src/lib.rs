//! The process's one rustls crypto provider.
//!
//! Every TLS client of the workspace (reqwest, kube, lettre, sqlx, the OTLP exporters) runs on
//! rustls with *ring*; aws-lc-rs is not compiled at all (its C build was the slowest part of a
//! cold build). reqwest is built with `rustls-no-provider`, so it takes the process-level
//! provider and panics when none is installed: call [`install`] before building a client. It is
//! cheap and idempotent, so each place that builds clients may call it — the traced client
//! (`telemetry::client`), `service_kit::launch`, `testbed`'s clients and xtask's `main` do.

/// Installs ring as the process-level rustls [`CryptoProvider`](rustls::crypto::CryptoProvider)
/// unless one is already installed.
pub fn install() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn install_makes_ring_the_process_default() {
        super::install();
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        // The key provider's Debug is the backend's name (`Ring`, `AwsLcRs`).
        assert_eq!(format!("{:?}", installed.key_provider), "Ring");
    }

    #[test]
    fn a_second_install_keeps_the_first() {
        super::install();
        let first = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        super::install();
        let second = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(std::sync::Arc::ptr_eq(first, second));
    }
}
