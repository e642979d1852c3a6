//! LSNs: byte positions in a write-ahead log, as in PostgreSQL. A record that starts at `lsn`
//! and is `n` bytes long ends at `lsn + n`, where the next one starts. Shown in PostgreSQL's text
//! form `X/Y` (high and low 32 bits, hex).

/// An LSN in PostgreSQL's text form, `X/Y`.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses PostgreSQL's text form `X/Y` (`0/16B3748`); `None` if it is not one.
pub fn parse_lsn_text(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= 0xFFFF_FFFF && lo <= 0xFFFF_FFFF).then_some((hi << 32) | lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for lsn in [0, 0x6B, 0x1_0000_0000, u64::MAX] {
            assert_eq!(parse_lsn_text(&lsn_text(lsn)), Some(lsn));
        }
        assert_eq!(lsn_text(0x1_0000_00FF), "1/FF");
        assert_eq!(parse_lsn_text("16B3748"), None);
        assert_eq!(parse_lsn_text("1FFFFFFFF/0"), None);
    }
}
