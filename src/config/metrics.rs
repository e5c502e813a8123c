//! `metrics`: the Prometheus listener (`/metrics`, `/ready`), on an address and port of its
//! own, so that the API's proxy never exposes it. Neither mxisd nor ma1sd had metrics: the
//! keys follow `server`'s (`bindAddress`, `port`). Off unless written.

use super::check::Resolver;

/// The port of the metrics listener unless `metrics.port` says otherwise: next to
/// `server.port`'s 8090 (Prometheus itself takes 9090).
pub const DEFAULT_METRICS_PORT: u16 = 8091;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metrics.enabled`: start the listener.
    pub enabled: bool,
    pub bind_address: String,
    pub port: u16,
}

impl Resolver<'_> {
    pub(super) fn metrics(
        &mut self,
        m: raw::Metrics,
        server: &super::ServerConfig,
    ) -> Result<MetricsConfig, String> {
        let bind_address = self
            .non_empty("metrics.bindAddress", m.bind_address)?
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = m.port.unwrap_or(DEFAULT_METRICS_PORT);
        if port == 0 {
            return Err(self.at("metrics.port", "0 is not a port"));
        }
        let enabled = m.enabled.unwrap_or(false);
        if enabled && port == server.port && bind_address == server.bind_address {
            return Err(self.at(
                "metrics.port",
                format!("{port} is server.port: the metrics listener needs a port of its own"),
            ));
        }
        Ok(MetricsConfig {
            enabled,
            bind_address,
            port,
        })
    }
}

/// `metrics` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Metrics {
            enabled: bool = "enabled",
            bind_address: String = "bindAddress",
            port: u16 = "port",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    #[test]
    fn off_by_default_on_loopback_and_a_port_of_its_own() {
        let base = "matrix:\n  domain: example.org\n";
        let c = load_str(base, "t").unwrap().config.metrics;
        assert!(!c.enabled);
        assert_eq!((c.bind_address.as_str(), c.port), ("127.0.0.1", 8091));
        let on = format!("{base}metrics:\n  enabled: true\n  bindAddress: 0.0.0.0\n  port: 9102\n");
        let c = load_str(&on, "t").unwrap().config.metrics;
        assert!(c.enabled);
        assert_eq!((c.bind_address.as_str(), c.port), ("0.0.0.0", 9102));
        let clash = format!("{base}metrics:\n  enabled: true\n  port: 8090\n");
        let e = load_str(&clash, "t").unwrap_err().to_string();
        assert!(
            e.contains("metrics.port") && e.contains("server.port"),
            "{e}"
        );
        let typo = format!("{base}metrics:\n  enable: true\n");
        assert!(load_str(&typo, "t").is_err());
    }
}
