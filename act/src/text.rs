//! Bounded text helpers: every string this crate stores, sends to a model or publishes is cut
//! to a maximum size on a character boundary.

/// `s` cut to at most `max_bytes` bytes of UTF-8 on a character boundary, with `…` appended
/// (within the bound) when cut.
pub fn truncate_utf8(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    const ELLIPSIS: &str = "…";
    let budget = max_bytes.saturating_sub(ELLIPSIS.len());
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    let mut out = String::with_capacity(end + ELLIPSIS.len());
    out.push_str(s.get(..end).unwrap_or_default());
    if max_bytes >= ELLIPSIS.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(truncate_utf8("abc", 3), "abc");
        assert_eq!(truncate_utf8("abcdef", 5), "ab…");
        // "é" is 2 bytes: 4 + 3 would exceed 6, so only "é" fits before the ellipsis.
        assert_eq!(truncate_utf8("ééé", 6), "ééé");
        assert_eq!(truncate_utf8("éééé", 6), "é…");
        assert_eq!(truncate_utf8("🔑🔑", 4), "…");
        assert_eq!(truncate_utf8("🔑🔑", 7), "🔑…");
        assert_eq!(truncate_utf8("abc", 1), "");
    }
}
