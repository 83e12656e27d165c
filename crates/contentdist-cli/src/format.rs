//! Human-readable numbers and plain-text tables for the commands' output.

pub use contentdist::util::human_bytes as bytes;

/// A count with its noun, singular for one: `1 file`, `3 files`.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A transfer rate: `12.3 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0).round() as u64))
}

/// How much of `total` is `done`, as `45%`; `-` while the total is unknown.
pub fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        "-".to_string()
    } else {
        // Floor, so 100% is shown only when everything is there.
        format!("{}%", (u128::from(done) * 100 / u128::from(total)).min(100))
    }
}

/// A job's code as the catalogue writes it (`0x205D`), `-` for 0.
pub fn code(code: u32) -> String {
    if code == 0 {
        "-".to_string()
    } else {
        format!("0x{code:X}")
    }
}

/// A duration in milliseconds: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

/// How long ago a Unix time was, from `now`: `just now`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn age(then_unix: u64, now_unix: u64) -> String {
    let secs = now_unix.saturating_sub(then_unix);
    match secs {
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// Left-aligned columns, two spaces apart, with a header line; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12_897_485), "12.3 MiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn counts_rates_and_percents_read_naturally() {
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(0, "entry", "entries"), "0 entries");
        assert_eq!(rate(12_897_485.0), "12.3 MiB/s");
        assert_eq!(rate(-3.0), "0 B/s");
        assert_eq!(percent(45, 100), "45%");
        assert_eq!(percent(999, 1000), "99%");
        assert_eq!(percent(1000, 1000), "100%");
        assert_eq!(percent(5, 0), "-");
        assert_eq!(percent(u64::MAX, u64::MAX), "100%");
    }

    #[test]
    fn codes_durations_and_ages_are_short() {
        assert_eq!(code(0), "-");
        assert_eq!(code(0x205D), "0x205D");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_345), "12.3 s");
        assert_eq!(duration_ms(245_000), "4 min 05 s");
        assert_eq!(duration_ms(7_380_000), "2 h 03 min");
        assert_eq!(age(100, 130), "just now");
        assert_eq!(age(0, 300), "5 min ago");
        assert_eq!(age(0, 3 * 3600), "3 h ago");
        assert_eq!(age(0, 2 * 86_400 + 5), "2 d ago");
        assert_eq!(age(500, 100), "just now");
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let rows = vec![
            vec!["1".to_string(), "PKG00001".to_string(), "done".to_string()],
            vec!["12".to_string(), "P".to_string(), "failed".to_string()],
        ];
        assert_eq!(
            table(&["ID", "CONTENT", "STATE"], &rows),
            "ID  CONTENT   STATE\n1   PKG00001  done\n12  P         failed\n"
        );
    }
}
