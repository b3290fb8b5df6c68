//! `/system resource` and `/system identity`.

use super::{Args, Engine, ExecError, Run};
use crate::routeros::format;

/// RouterOS's uptime text: `1w2d3h4m5s`, leading zero units left out.
pub fn uptime_text(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out.push_str(&format!("{secs}s"));
    out
}

impl Engine {
    pub(super) fn resource_text(&self) -> String {
        let id = &self.config.identity;
        let rows: Vec<(&str, String)> = vec![
            ("uptime", uptime_text(self.started.elapsed().as_secs())),
            ("version", id.version.clone()),
            ("build-time", "2026-09-22 10:12:40".into()),
            ("minimum-version", "7.15.3".into()),
            ("free-memory", "28.1GiB".into()),
            ("total-memory", "31.3GiB".into()),
            ("cpu", "ARM64".into()),
            ("cpu-count", "16".into()),
            ("cpu-frequency", "2000MHz".into()),
            ("cpu-load", "1%".into()),
            ("free-hdd-space", "96.3MiB".into()),
            ("total-hdd-space", "128.0MiB".into()),
            ("write-sect-since-reboot", "1524".into()),
            ("write-sect-total", "822100".into()),
            ("bad-blocks", "0%".into()),
            ("architecture-name", "arm64".into()),
            ("board-name", id.board_name.clone()),
            ("platform", "MikroTik".into()),
        ];
        format::key_values(&rows)
    }

    pub(super) fn identity_text(&self) -> String {
        format::key_values(&[("name", self.store.state.identity.clone())])
    }

    pub(super) fn identity_set(&mut self, args: &Args, run: &mut Run<'_>) -> Result<(), ExecError> {
        if let Some(name) = args.text("name") {
            let mut state = self.store.state.clone();
            state.identity = name.to_string();
            self.commit(state, run)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::uptime_text;

    #[test]
    fn uptime_is_routeros_style() {
        assert_eq!(uptime_text(29), "29s");
        assert_eq!(uptime_text(3_725), "1h2m5s");
        assert_eq!(uptime_text(694_861), "1w1d1h1m1s");
    }
}
