//! The TLS clients of the workspace build with the one provider (TOOLING.md's panic, "Could not
//! automatically determine the process-level CryptoProvider", is what a second provider in the
//! build brings back).

#[test]
fn an_https_reqwest_client_builds_once_the_provider_is_installed() {
    crypto_provider::install();
    let client = reqwest::Client::builder()
        .https_only(true)
        .build()
        .expect("an HTTPS client");
    let request = client.get("https://example.invalid/").build().unwrap();
    assert_eq!(request.url().scheme(), "https");
}

#[tokio::test]
async fn a_kube_client_for_an_https_api_server_builds_once_the_provider_is_installed() {
    crypto_provider::install();
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    let client = kube::Client::try_from(config).expect("a kube client over rustls");
    assert_eq!(client.default_namespace(), "default");
}

#[tokio::test]
async fn a_kube_client_builds_without_an_explicit_install() {
    // kube asks rustls for the provider its crate features name: only ring is compiled in.
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    kube::Client::try_from(config).expect("a kube client over rustls");
}
