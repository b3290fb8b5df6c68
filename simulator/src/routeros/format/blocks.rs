//! Singleton blocks: `name: value` rows with right-aligned names.
//!
//! The name column is as wide as the longest name **plus two**: `/system resource print` aligns to
//! `  write-sect-since-reboot:` (23 characters, 2 spaces), `/system identity print` prints
//! `  name: MikroTik`, and a `/disk monitor-traffic` fixture taken from a real RDS aligns to
//! `  write-ops-per-second:` (REFERENCE.md §9.2, §9.3, §6.5).

use super::CRLF;

/// `/system resource print`, `/system identity print`: `<name>: <value>` per row, names
/// right-aligned to the longest name plus two, values as given.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let name_width = name_column(rows);
    rows.iter()
        .map(|(name, value)| format!("{name:>name_width$}: {value}{CRLF}"))
        .collect()
}

/// `/disk monitor-traffic <slot> once`: like [`key_values`], but the values are right-aligned to
/// the longest value too (`              read-ops:        113 229`), as in MikroTik's Disks page
/// and the rds-csi Go driver's fixture from a real RDS. The caller formats the values
/// (`29 668 814 848`, `0bps`, `48s149ms`).
pub fn monitor_block(rows: &[(&str, String)]) -> String {
    let name_width = name_column(rows);
    let value_width = rows
        .iter()
        .map(|(_, value)| value.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("{name:>name_width$}: {value:>value_width$}{CRLF}"))
        .collect()
}

fn name_column(rows: &[(&str, String)]) -> usize {
    rows.iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<'a>(pairs: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
        pairs
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect()
    }

    #[test]
    fn key_values_reproduces_the_resource_print() {
        // REFERENCE.md §9.2.
        let resource = rows(&[
            ("uptime", "29s"),
            ("version", "7.24rc2"),
            ("build-time", "2023-08-31 13:55:47"),
            ("minimum-version", "7.6"),
            ("free-memory", "94.2MiB"),
            ("total-memory", "224.0MiB"),
            ("cpu", "ARM"),
            ("cpu-count", "2"),
            ("cpu-frequency", "800MHz"),
            ("cpu-load", "2%"),
            ("free-hdd-space", "93.5MiB"),
            ("total-hdd-space", "128.5MiB"),
            ("write-sect-since-reboot", "85"),
            ("write-sect-total", "222100"),
            ("bad-blocks", "0%"),
            ("architecture-name", "arm"),
            ("board-name", "hAP ax lite LTE6"),
            ("platform", "MikroTik"),
        ]);
        let expected = concat!(
            "                   uptime: 29s\r\n",
            "                  version: 7.24rc2\r\n",
            "               build-time: 2023-08-31 13:55:47\r\n",
            "          minimum-version: 7.6\r\n",
            "              free-memory: 94.2MiB\r\n",
            "             total-memory: 224.0MiB\r\n",
            "                      cpu: ARM\r\n",
            "                cpu-count: 2\r\n",
            "            cpu-frequency: 800MHz\r\n",
            "                 cpu-load: 2%\r\n",
            "           free-hdd-space: 93.5MiB\r\n",
            "          total-hdd-space: 128.5MiB\r\n",
            "  write-sect-since-reboot: 85\r\n",
            "         write-sect-total: 222100\r\n",
            "               bad-blocks: 0%\r\n",
            "        architecture-name: arm\r\n",
            "               board-name: hAP ax lite LTE6\r\n",
            "                 platform: MikroTik\r\n",
        );
        assert_eq!(key_values(&resource), expected);
    }

    #[test]
    fn key_values_reproduces_the_identity_print() {
        assert_eq!(
            key_values(&rows(&[("name", "MikroTik")])),
            "  name: MikroTik\r\n"
        );
        assert_eq!(key_values(&[]), "");
    }

    #[test]
    fn monitor_block_right_aligns_names_and_values() {
        // The rds-csi Go driver's `/disk monitor-traffic storage-pool once` fixture from an RDS.
        let traffic = rows(&[
            ("slot", "storage-pool"),
            ("read-ops", "243 401"),
            ("read-ops-per-second", "0"),
            ("read-bytes", "33 131 503 616"),
            ("read-rate", "0bps"),
            ("read-merges", "0"),
            ("read-time", "0ms"),
            ("write-ops", "17 667 231"),
            ("write-ops-per-second", "76"),
            ("write-bytes", "515 659 673 600"),
            ("write-rate", "12.8Mbps"),
            ("write-merges", "0"),
            ("write-time", "0ms"),
            ("in-flight-ops", "0"),
            ("active-time", "0ms"),
            ("wait-time", "0ms"),
            ("discard-ops", "0"),
            ("discard-bytes", "0"),
            ("discard-merges", "0"),
            ("discard-time", "0ms"),
            ("flush-ops", "0"),
            ("flush-time", "0ms"),
        ]);
        let expected = concat!(
            "                  slot:    storage-pool\r\n",
            "              read-ops:         243 401\r\n",
            "   read-ops-per-second:               0\r\n",
            "            read-bytes:  33 131 503 616\r\n",
            "             read-rate:            0bps\r\n",
            "           read-merges:               0\r\n",
            "             read-time:             0ms\r\n",
            "             write-ops:      17 667 231\r\n",
            "  write-ops-per-second:              76\r\n",
            "           write-bytes: 515 659 673 600\r\n",
            "            write-rate:        12.8Mbps\r\n",
            "          write-merges:               0\r\n",
            "            write-time:             0ms\r\n",
            "         in-flight-ops:               0\r\n",
            "           active-time:             0ms\r\n",
            "             wait-time:             0ms\r\n",
            "           discard-ops:               0\r\n",
            "         discard-bytes:               0\r\n",
            "        discard-merges:               0\r\n",
            "          discard-time:             0ms\r\n",
            "             flush-ops:               0\r\n",
            "            flush-time:             0ms\r\n",
        );
        assert_eq!(monitor_block(&traffic), expected);
    }
}
