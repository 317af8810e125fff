//! The organism's services and the ports they listen on: the one service → port table that
//! `cargo xtask`, the services' defaults and the local runs read.
//!
//! ```
//! assert_eq!(topology::HEART.port, 8081);
//! assert_eq!(topology::port("user-service"), Some(8083));
//! assert_eq!(topology::API_GATEWAY.local_url(), "http://127.0.0.1:8080");
//! ```

/// A named process and the TCP port it listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Service {
    /// Its name: the crate, binary, Kubernetes Service and `OTEL_SERVICE_NAME`.
    pub name: &'static str,
    /// The port it listens on, locally and in its Kubernetes Service.
    pub port: u16,
}

impl Service {
    /// `name` listening on `port`.
    pub const fn new(name: &'static str, port: u16) -> Self {
        Self { name, port }
    }

    /// `http://127.0.0.1:<port>`: where a local run serves it.
    pub fn local_url(self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`: the listen address of a local run.
    pub fn local_addr(self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The organs' front door: routes `/user`, `/beat`, `/think` to the others.
pub const API_GATEWAY: Service = Service::new("api-gateway", 8080);
/// The heartbeat organ.
pub const HEART: Service = Service::new("heart", 8081);
/// The thinking organ (calls the heart).
pub const BRAIN: Service = Service::new("brain", 8082);
/// Users, backed by SQLite or PostgreSQL.
pub const USER_SERVICE: Service = Service::new("user-service", 8083);
/// Probes the others and raises findings.
pub const HEALTH_MONITOR: Service = Service::new("health-monitor", 8084);
/// Repairs what the alerts name.
pub const AUTO_HEALER: Service = Service::new("auto-healer", 8085);
/// Tells people, once.
pub const ALERT_SERVICE: Service = Service::new("alert-service", 8086);

/// The seven services, in start order (each after what it calls).
pub const SERVICES: [Service; 7] = [
    HEART,
    BRAIN,
    USER_SERVICE,
    API_GATEWAY,
    ALERT_SERVICE,
    AUTO_HEALER,
    HEALTH_MONITOR,
];

/// The four organs that serve traffic.
pub const ORGANS: [Service; 4] = [HEART, BRAIN, USER_SERVICE, API_GATEWAY];

/// The process manager of a local run (`cargo xtask up`): its control API, which the
/// auto-healer's local mode calls to restart a service.
pub const LAUNCHER: Service = Service::new("launcher", 8090);
/// Prometheus, as a local run starts it and as kube-prometheus-stack serves it.
pub const PROMETHEUS: Service = Service::new("prometheus", 9090);
/// Alertmanager, as a local run starts it and as kube-prometheus-stack serves it.
pub const ALERTMANAGER: Service = Service::new("alertmanager", 9093);

/// The service called `name` (one of [`SERVICES`]).
pub fn service(name: &str) -> Option<Service> {
    SERVICES.into_iter().find(|s| s.name == name)
}

/// The port of the service called `name` (one of [`SERVICES`]).
pub fn port(name: &str) -> Option<u16> {
    service(name).map(|s| s.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_are_distinct() {
        let all: Vec<Service> = SERVICES
            .into_iter()
            .chain([LAUNCHER, PROMETHEUS, ALERTMANAGER])
            .collect();
        for s in &all {
            assert_eq!(all.iter().filter(|o| o.name == s.name).count(), 1, "{s:?}");
            assert_eq!(all.iter().filter(|o| o.port == s.port).count(), 1, "{s:?}");
        }
    }

    #[test]
    fn start_order_puts_callees_first() {
        let at = |s: Service| SERVICES.iter().position(|o| *o == s).unwrap();
        assert!(at(HEART) < at(BRAIN));
        assert!(at(BRAIN) < at(API_GATEWAY) && at(USER_SERVICE) < at(API_GATEWAY));
        assert!(at(ALERT_SERVICE) < at(HEALTH_MONITOR) && at(AUTO_HEALER) < at(HEALTH_MONITOR));
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(service("brain"), Some(BRAIN));
        assert_eq!(port("alert-service"), Some(8086));
        assert_eq!(port("prometheus"), None, "peers are not services");
        assert_eq!(port("nope"), None);
        assert!(ORGANS.iter().all(|o| SERVICES.contains(o)));
        assert_eq!(HEALTH_MONITOR.local_addr(), "127.0.0.1:8084");
    }
}
